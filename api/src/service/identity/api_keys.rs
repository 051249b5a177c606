//! Tenants' API keys: create (the secret shown once), revoke, and the check
//! that resolves a presented key to its tenant's principal.

use dotmac_schema::{ApiKeyId, ApiKeyScope, Principal, PrincipalKind, Role, Scope, TenantId};

use super::Identity;
use crate::auth::{self, hash_secret, new_api_key};
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::{parse_id, required_text};
use crate::store::api_key_rows::{self, ApiKeyRow};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::tenant_rows;

const MANAGERS: &[Role] = &[Role::PlatformAdmin, Role::ResellerAdmin, Role::TenantAdmin];

pub async fn create(
    identity: &Identity,
    ctx: &RequestCtx,
    tenant_id: &str,
    name: Option<&str>,
    scopes: &[ApiKeyScope],
) -> ApiResult<(ApiKeyRow, String)> {
    let p = ctx.writer_with(MANAGERS)?;
    let tenant: TenantId = parse_id("tenantId", tenant_id)?;
    if scopes.is_empty() {
        return Err(ApiError::validation(
            "scopes",
            "must name at least one scope",
        ));
    }
    let name = required_text("name", name.unwrap_or("default"), 100)?;
    let tx = identity.store.begin(&p.scope).await?;
    let t = tenant_rows::get(&tx, &p.scope, &tenant).await?;
    let (secret, prefix) = new_api_key();
    let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let row = api_key_rows::insert(
        &tx,
        ApiKeyRow {
            id: ApiKeyId::new().to_string(),
            tenant_id: t.id.clone(),
            name,
            prefix,
            secret_hash: hash_secret(&secret),
            scopes: names.join(","),
            created_by: p.actor(),
            created_at: identity.clock.now(),
            last_used_at: None,
            revoked_at: None,
        },
    )
    .await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "api_key.create",
            tenant_id: Some(t.id.clone()),
            reseller_id: t.reseller_id.clone(),
            object_id: Some(row.id.clone()),
            after: Some(row.scopes.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok((row, secret))
}

pub async fn revoke(identity: &Identity, ctx: &RequestCtx, id: &str) -> ApiResult<ApiKeyRow> {
    let p = ctx.writer_with(MANAGERS)?;
    let id: ApiKeyId = parse_id("id", id)?;
    let tx = identity.store.begin(&p.scope).await?;
    let row = api_key_rows::get(&tx, &p.scope, &id).await?;
    if row.revoked_at.is_some() {
        return Err(ApiError::conflict("id", "the API key is already revoked"));
    }
    let row = api_key_rows::revoke(&tx, &row, identity.clock.now()).await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "api_key.revoke",
            tenant_id: Some(row.tenant_id.clone()),
            object_id: Some(row.id.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    // After the commit, so a re-verification can only read the revocation.
    identity.key_cache.forget(&row.id);
    Ok(row)
}

/// Resolves `dmk_…` to a principal bound to its tenant; records the use.
pub async fn authenticate(identity: &Identity, key: &str) -> ApiResult<Principal> {
    let invalid = || ApiError::Unauthenticated("invalid API key".into());
    if let Some(principal) = identity.key_cache.get(key) {
        return Ok(principal);
    }
    let prefix = auth::api_key_prefix(key).ok_or_else(invalid)?;
    let tx = identity.store.begin_system().await?;
    let row = api_key_rows::find_by_prefix_system(&tx, prefix)
        .await?
        .ok_or_else(invalid)?;
    // Constant-time enough: both sides are fixed-length hex of a SHA-256.
    if row.revoked_at.is_some() || row.secret_hash != hash_secret(key) {
        return Err(invalid());
    }
    api_key_rows::touch(&tx, &row, identity.clock.now()).await?;
    tx.commit().await?;
    let scopes = row
        .scopes
        .split(',')
        .filter_map(ApiKeyScope::parse)
        .collect();
    let principal = Principal {
        kind: PrincipalKind::ApiKey {
            id: parse_id("apiKey", &row.id)?,
            scopes,
        },
        scope: Scope::Tenant(parse_id("apiKey", &row.tenant_id)?),
    };
    identity.key_cache.put(key, &row.id, principal.clone());
    Ok(principal)
}

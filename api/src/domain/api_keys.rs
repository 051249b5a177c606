//! API key use cases: create (secret shown once), revoke.

use dotmac_schema::{ApiKeyId, ApiKeyScope, Role, TenantId};

use super::{parse_id, required_text};
use crate::app::{App, RequestCtx};
use crate::auth::{hash_secret, new_api_key};
use crate::error::{ApiError, ApiResult};
use crate::store::api_keys::{self, ApiKeyRow};
use crate::store::audit::{self, AuditEntry};
use crate::store::tenants;

const MANAGERS: &[Role] = &[Role::PlatformAdmin, Role::ResellerAdmin, Role::TenantAdmin];

pub async fn create(
    app: &App,
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
    let tx = app.store.begin(&p.scope).await?;
    let t = tenants::get(&tx, &p.scope, &tenant).await?;
    let (secret, prefix) = new_api_key();
    let mut names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let row = api_keys::insert(
        &tx,
        ApiKeyRow {
            id: ApiKeyId::new().to_string(),
            tenant_id: t.id.clone(),
            name,
            prefix,
            secret_hash: hash_secret(&secret),
            scopes: names.join(","),
            created_by: p.actor(),
            created_at: app.clock.now(),
            last_used_at: None,
            revoked_at: None,
        },
    )
    .await?;
    audit::record(
        &tx,
        app.clock.now(),
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

pub async fn revoke(app: &App, ctx: &RequestCtx, id: &str) -> ApiResult<ApiKeyRow> {
    let p = ctx.writer_with(MANAGERS)?;
    let id: ApiKeyId = parse_id("id", id)?;
    let tx = app.store.begin(&p.scope).await?;
    let row = api_keys::get(&tx, &p.scope, &id).await?;
    if row.revoked_at.is_some() {
        return Err(ApiError::conflict("id", "the API key is already revoked"));
    }
    let row = api_keys::revoke(&tx, &row, app.clock.now()).await?;
    audit::record(
        &tx,
        app.clock.now(),
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
    app.key_cache.forget(&row.id);
    Ok(row)
}

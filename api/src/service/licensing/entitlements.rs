//! A tenant's entitlements as the signed, versioned snapshot its instance
//! holds (`GET /v1/entitlements`): today the features its live licences
//! grant (each with its enforcement) and their seat limits. Plan
//! entitlements, add-ons, overrides and metered limits with grants are
//! still to come (see docs/architecture.md).
//!
//! The version is derived, not stored: one for every licence taken, one for
//! every licence that ended (cancelled, revoked, or past its trial), one for
//! every tier change. Each term only grows, so the version rises with every
//! change of what the tenant may use, and two processes compute the same
//! one without coordinating.

use std::collections::BTreeMap;

use dotmac_licence::{Entitlement, EntitlementValue, Kind, Snapshot};
use dotmac_schema::{LicenceState, Scope, TenantId};

use super::catalog::granted;
use super::Licensing;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::parse_id;
use crate::store::{licence_rows, plugin_rows, tenant_rows};

/// A signed snapshot and its version.
pub struct Signed {
    pub version: u64,
    pub document: String,
}

/// The tenant whose entitlements the caller asks for: an API key's own
/// tenant (it may not name another), or `tenant_id` within a user's scope.
fn tenant_of(ctx: &RequestCtx, tenant_id: Option<&str>) -> ApiResult<(Scope, TenantId)> {
    let p = super::licences::reader(ctx)?;
    let id = match (tenant_id, &p.scope) {
        (Some(t), _) => parse_id::<TenantId>("tenantId", t)?,
        (None, Scope::Tenant(t)) => t.clone(),
        (None, _) => {
            return Err(ApiError::validation(
                "tenantId",
                "must be given outside a tenant's scope",
            ))
        }
    };
    Ok((p.scope.clone(), id))
}

/// The caller's (or `tenant_id`'s) entitlements, signed.
pub async fn snapshot(
    licensing: &Licensing,
    ctx: &RequestCtx,
    tenant_id: Option<&str>,
) -> ApiResult<Signed> {
    let (scope, tenant) = tenant_of(ctx, tenant_id)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&scope).await?;
    // Another tenant's is NOT_FOUND before anything else is said of it.
    tenant_rows::get(&tx, &scope, &tenant).await?;
    let all = licence_rows::all_of_tenant(&tx, &scope, tenant.as_str()).await?;
    let changes = licence_rows::tier_change_count(&tx, &scope, tenant.as_str()).await?;
    let mut entitlements = BTreeMap::new();
    let mut version = changes;
    for l in &all {
        let ended = l.state != LicenceState::Active || l.ends_at.is_some_and(|e| e <= now);
        version += 1 + u64::from(ended);
        if ended {
            continue;
        }
        let entry = plugin_rows::get(&tx, &l.plugin_id)
            .await?
            .ok_or_else(|| ApiError::internal("a licence's plugin is gone"))?;
        for f in granted(&entry, l.tier)? {
            // Two licences granting one feature: the stricter enforcement
            // is not taken; either grants it, so the most lenient stands.
            let e = entitlements.entry(f.name).or_insert(Entitlement {
                value: EntitlementValue::Boolean { enabled: true },
                enforcement: f.enforcement,
            });
            e.enforcement = e.enforcement.min(f.enforcement);
        }
        entitlements.insert(
            format!("{}.activations", entry.plugin.slug),
            Entitlement {
                value: EntitlementValue::Config {
                    value: serde_json::json!(l.activation_limit),
                },
                enforcement: dotmac_licence::Enforcement::Hard,
            },
        );
    }
    tx.commit().await?;
    let snapshot = Snapshot {
        tenant_id: tenant.to_string(),
        version,
        issued_at: now.timestamp(),
        entitlements,
    };
    let signer = licensing.signing.signer().await?;
    let document = signer
        .sign_json(Kind::Snapshot, &snapshot)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(Signed { version, document })
}

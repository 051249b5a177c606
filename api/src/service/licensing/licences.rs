//! Tenants' licences: taken as a 14-day trial (once per tenant and plugin)
//! or paid, moved between tiers by effective-dated changes (never deleted
//! and re-created), cancelled, or revoked by the platform (onto the signed
//! revocation list). Seats: an instance id takes one under the licence's
//! row lock, so the last seat cannot be taken twice. Licence files are
//! signed here for the verifier ISP instances embed.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use dotmac_licence::{FeatureGrant, Kind, LicencePayload, PluginGrant, RevocationList};
use dotmac_schema::{
    ActivationId, ApiKeyScope, LicenceChangeId, LicenceId, LicenceKind, LicenceState, PluginTier,
    Principal, PrincipalKind, Role, Scope, TenantId, TenantState,
};

use super::catalog::granted;
use super::Licensing;
use crate::caller::{Access, RequestCtx};
use crate::error::{ApiError, ApiResult};
use crate::service::{parse_id, reason};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::licence_rows::{self, ActivationRow, LicenceRow, TierChangeRow};
use crate::store::plugin_rows::{self, PluginEntry};
use crate::store::{tenant_rows, Page, PageRequest, Tx};

/// How long a trial lasts.
pub const TRIAL_DAYS: i64 = 14;
/// How long a licence file is good for before the instance must fetch a
/// fresh one, and how long it stays valid without one.
pub const REFRESH_AFTER: TimeDelta = TimeDelta::days(1);
pub const FILE_VALIDITY: TimeDelta = TimeDelta::days(7);
/// After a file's expiry: how long soft features keep working.
pub const GRACE: TimeDelta = TimeDelta::days(3);
/// Activations of one licence: a reinstall loop or a key shared across a
/// fleet cannot churn seats faster than this.
pub const ACTIVATIONS: crate::limiter::Rate = crate::limiter::Rate {
    per_minute: 30,
    burst: 20,
};
/// The longest instance id (made by the instance at install).
pub const MAX_INSTANCE_ID: usize = 64;

/// Seats of a licence, by tier.
pub fn activation_limit(tier: PluginTier) -> i32 {
    match tier {
        PluginTier::Basic => 1,
        PluginTier::Professional => 3,
        PluginTier::Enterprise => 10,
    }
}

/// A licence to take.
#[derive(Debug, Clone)]
pub struct TakeLicence {
    pub tenant_id: String,
    /// The plugin's id or slug.
    pub plugin: String,
    pub tier: PluginTier,
    pub kind: LicenceKind,
}

/// Admins of the tenant, of its reseller, or of the platform.
const ADMINS: [Role; 3] = [Role::PlatformAdmin, Role::ResellerAdmin, Role::TenantAdmin];

/// Who may take and free seats: the tenant's admins, or its own API key
/// with `license:read` (the instance itself).
fn seat_holder(ctx: &RequestCtx) -> ApiResult<&Principal> {
    match &ctx.principal()?.kind {
        PrincipalKind::ApiKey { .. } => {
            let p = reader(ctx)?;
            if let Access::Suspended { since } = ctx.access {
                return Err(ApiError::Forbidden(format!(
                    "this tenant is suspended since {since}"
                )));
            }
            Ok(p)
        }
        _ => ctx.writer_with(&ADMINS),
    }
}

/// Who may read licences, files and entitlements: anyone signed in within
/// scope, or an API key with `license:read`.
pub(super) fn reader(ctx: &RequestCtx) -> ApiResult<&Principal> {
    let p = ctx.principal()?;
    if let PrincipalKind::ApiKey { scopes, .. } = &p.kind {
        if !scopes.contains(&ApiKeyScope::LicenseRead) {
            return Err(ApiError::Forbidden(
                "this API key lacks the license:read scope".into(),
            ));
        }
    }
    Ok(p)
}

fn instance_id(value: &str) -> ApiResult<String> {
    let v = value.trim();
    let ok = !v.is_empty()
        && v.len() <= MAX_INSTANCE_ID
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(v.to_owned())
    } else {
        Err(ApiError::validation(
            "instanceId",
            format!("must be 1 to {MAX_INSTANCE_ID} letters, digits, - or _"),
        ))
    }
}

async fn audit(
    tx: &Tx,
    ctx: &RequestCtx,
    p: &Principal,
    now: DateTime<Utc>,
    action: &str,
    row: &LicenceRow,
    (before, after): (Option<String>, Option<String>),
) -> ApiResult<()> {
    audit_log::record(
        tx,
        now,
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action,
            tenant_id: Some(row.tenant_id.clone()),
            reseller_id: None,
            object_id: Some(row.id.clone()),
            before,
            after,
        },
    )
    .await
}

fn offered(entry: &PluginEntry, tier: PluginTier) -> ApiResult<()> {
    if entry.tiers.iter().any(|t| t.tier == tier) {
        Ok(())
    } else {
        Err(ApiError::validation(
            "input.tier",
            format!(
                "{} does not offer the {} tier",
                entry.plugin.slug,
                tier.as_str()
            ),
        ))
    }
}

/// Takes a licence of a plugin for a tenant (its admins, its reseller's,
/// the platform's). A paid licence taken during the tenant's trial of the
/// plugin ends the trial and keeps its seats.
pub async fn take(
    licensing: &Licensing,
    ctx: &RequestCtx,
    input: &TakeLicence,
) -> ApiResult<LicenceRow> {
    let p = ctx.writer_with(&ADMINS)?;
    let tenant_id: TenantId = parse_id("input.tenantId", &input.tenant_id)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let tenant = tenant_rows::get(&tx, &p.scope, &tenant_id).await?;
    if !matches!(
        tenant.state,
        TenantState::Active | TenantState::Provisioning
    ) {
        return Err(ApiError::conflict(
            "input.tenantId",
            format!(
                "the tenant is {:?}: licences are taken by active tenants",
                tenant.state
            ),
        ));
    }
    let entry = plugin_rows::get(&tx, input.plugin.trim())
        .await?
        .ok_or(ApiError::not_found("plugin"))?;
    offered(&entry, input.tier)?;
    let mut carried = Vec::new();
    if input.kind == LicenceKind::Paid {
        if let Some(trial) =
            licence_rows::live_of(&tx, &p.scope, tenant_id.as_str(), &entry.plugin.id).await?
        {
            if trial.kind == LicenceKind::Trial {
                let mut ended = licence_rows::lock(&tx, &p.scope, &trial.id, now).await?;
                carried = licence_rows::live_activations(&tx, &p.scope, &trial.id).await?;
                licence_rows::deactivate(&tx, &p.scope, &trial.id, None, now).await?;
                ended.state = LicenceState::Cancelled;
                ended.ends_at = Some(now);
                ended.updated_at = now;
                licence_rows::update(&tx, ended).await?;
            }
        }
    }
    let row = licence_rows::insert(
        &tx,
        LicenceRow {
            id: LicenceId::new().to_string(),
            tenant_id: tenant_id.to_string(),
            plugin_id: entry.plugin.id.clone(),
            tier: input.tier,
            kind: input.kind,
            state: LicenceState::Active,
            activation_limit: activation_limit(input.tier),
            starts_at: now,
            ends_at: (input.kind == LicenceKind::Trial).then(|| now + TimeDelta::days(TRIAL_DAYS)),
            created_at: now,
            updated_at: now,
        },
    )
    .await?;
    for seat in carried
        .iter()
        .take(usize::try_from(row.activation_limit).unwrap_or(0))
    {
        licence_rows::insert_activation(
            &tx,
            ActivationRow {
                id: ActivationId::new().to_string(),
                licence_id: row.id.clone(),
                tenant_id: row.tenant_id.clone(),
                instance_id: seat.instance_id.clone(),
                activated_at: now,
                deactivated_at: None,
            },
        )
        .await?;
    }
    audit(
        &tx,
        ctx,
        p,
        now,
        "licence.take",
        &row,
        (
            None,
            Some(format!(
                "{} {} {:?}",
                entry.plugin.slug,
                row.tier.as_str(),
                row.kind
            )),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Moves a live licence to another tier from now on: the licence stays
/// (its id, seats and files), the change is recorded with the instant it
/// took effect, so access never has a gap and billing prorates exactly.
pub async fn change_tier(
    licensing: &Licensing,
    ctx: &RequestCtx,
    id: &str,
    tier: PluginTier,
) -> ApiResult<LicenceRow> {
    let p = ctx.writer_with(&ADMINS)?;
    let id: LicenceId = parse_id("id", id)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let mut row = licence_rows::lock(&tx, &p.scope, id.as_str(), now).await?;
    live(&row, now)?;
    if row.tier == tier {
        return Err(ApiError::conflict(
            "tier",
            "the licence is at this tier already",
        ));
    }
    let entry = plugin_rows::get(&tx, &row.plugin_id)
        .await?
        .ok_or_else(|| ApiError::internal("a licence's plugin is gone"))?;
    offered(&entry, tier).map_err(|e| match e {
        ApiError::Validation { reason, .. } => ApiError::validation("tier", reason),
        other => other,
    })?;
    let seats = licence_rows::live_activations(&tx, &p.scope, &row.id).await?;
    let limit = activation_limit(tier);
    if seats.len() > usize::try_from(limit).unwrap_or(0) {
        return Err(ApiError::conflict(
            "tier",
            format!(
                "{} instances hold seats and {} allows {limit}: deactivate some first",
                seats.len(),
                tier.as_str()
            ),
        ));
    }
    licence_rows::record_tier_change(
        &tx,
        TierChangeRow {
            id: LicenceChangeId::new().to_string(),
            licence_id: row.id.clone(),
            tenant_id: row.tenant_id.clone(),
            from_tier: row.tier,
            to_tier: tier,
            effective_at: now,
            created_at: now,
        },
    )
    .await?;
    let before = row.tier;
    row.tier = tier;
    row.activation_limit = limit;
    row.updated_at = now;
    let row = licence_rows::update(&tx, row).await?;
    audit(
        &tx,
        ctx,
        p,
        now,
        "licence.change_tier",
        &row,
        (Some(before.as_str().into()), Some(tier.as_str().into())),
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// A licence that can be used now: active, and its trial not over.
fn live(row: &LicenceRow, now: DateTime<Utc>) -> ApiResult<()> {
    if row.state != LicenceState::Active {
        return Err(ApiError::conflict(
            "id",
            format!("the licence is {:?}", row.state),
        ));
    }
    if row.ends_at.is_some_and(|end| end <= now) {
        return Err(ApiError::conflict("id", "the licence's trial has ended"));
    }
    Ok(())
}

/// Ends a licence now (its admins); its seats are freed.
pub async fn cancel(licensing: &Licensing, ctx: &RequestCtx, id: &str) -> ApiResult<LicenceRow> {
    let p = ctx.writer_with(&ADMINS)?;
    end(licensing, ctx, p, id, LicenceState::Cancelled, None).await
}

/// Withdraws a licence (platform admins, with a reason): it goes onto the
/// revocation list every instance receives, and its seats are freed.
pub async fn revoke(
    licensing: &Licensing,
    ctx: &RequestCtx,
    id: &str,
    why: &str,
) -> ApiResult<LicenceRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let why = reason(Some(why), true)?.unwrap_or_default();
    end(licensing, ctx, p, id, LicenceState::Revoked, Some(why)).await
}

async fn end(
    licensing: &Licensing,
    ctx: &RequestCtx,
    p: &Principal,
    id: &str,
    state: LicenceState,
    why: Option<String>,
) -> ApiResult<LicenceRow> {
    let id: LicenceId = parse_id("id", id)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let mut row = licence_rows::lock(&tx, &p.scope, id.as_str(), now).await?;
    if row.state != LicenceState::Active {
        return Err(ApiError::conflict(
            "id",
            format!("the licence is {:?} already", row.state),
        ));
    }
    licence_rows::deactivate(&tx, &p.scope, &row.id, None, now).await?;
    if let Some(why) = &why {
        licence_rows::revoke(&tx, &row.id, &row.tenant_id, why, now).await?;
    }
    row.state = state;
    row.ends_at = Some(row.ends_at.map_or(now, |e| e.min(now)));
    row.updated_at = now;
    let row = licence_rows::update(&tx, row).await?;
    let action = if state == LicenceState::Revoked {
        "licence.revoke"
    } else {
        "licence.cancel"
    };
    audit(&tx, ctx, p, now, action, &row, (None, why)).await?;
    tx.commit().await?;
    Ok(row)
}

/// Takes a seat of the licence for `instance` (idempotent: an instance
/// holding one keeps it). The licence's row is locked first, so parallel
/// activations for the last seat are counted one at a time: one wins, the
/// others are CONFLICT.
pub async fn activate(
    licensing: &Licensing,
    ctx: &RequestCtx,
    id: &str,
    instance: &str,
) -> ApiResult<ActivationRow> {
    let p = seat_holder(ctx)?;
    let id: LicenceId = parse_id("id", id)?;
    let instance = instance_id(instance)?;
    licensing
        .limiter
        .check(&format!("activation:{id}"), ACTIVATIONS)
        .await?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let row = licence_rows::lock(&tx, &p.scope, id.as_str(), now).await?;
    live(&row, now)?;
    let seats = licence_rows::live_activations(&tx, &p.scope, &row.id).await?;
    if let Some(held) = seats.iter().find(|s| s.instance_id == instance) {
        return Ok(held.clone());
    }
    if seats.len() >= usize::try_from(row.activation_limit).unwrap_or(0) {
        return Err(ApiError::conflict(
            "instanceId",
            format!(
                "every seat is taken ({} of {}): deactivate an instance first",
                seats.len(),
                row.activation_limit
            ),
        ));
    }
    let seat = licence_rows::insert_activation(
        &tx,
        ActivationRow {
            id: ActivationId::new().to_string(),
            licence_id: row.id.clone(),
            tenant_id: row.tenant_id.clone(),
            instance_id: instance.clone(),
            activated_at: now,
            deactivated_at: None,
        },
    )
    .await?;
    audit(
        &tx,
        ctx,
        p,
        now,
        "licence.activate",
        &row,
        (None, Some(instance)),
    )
    .await?;
    tx.commit().await?;
    Ok(seat)
}

/// Frees the seat of `instance`. NOT_FOUND when it holds none.
pub async fn deactivate(
    licensing: &Licensing,
    ctx: &RequestCtx,
    id: &str,
    instance: &str,
) -> ApiResult<()> {
    let p = seat_holder(ctx)?;
    let id: LicenceId = parse_id("id", id)?;
    let instance = instance_id(instance)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let row = licence_rows::lock(&tx, &p.scope, id.as_str(), now).await?;
    if licence_rows::deactivate(&tx, &p.scope, &row.id, Some(&instance), now).await? == 0 {
        return Err(ApiError::not_found("activation"));
    }
    audit(
        &tx,
        ctx,
        p,
        now,
        "licence.deactivate",
        &row,
        (Some(instance), None),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

/// One licence in the caller's scope.
pub async fn get(licensing: &Licensing, ctx: &RequestCtx, id: &str) -> ApiResult<LicenceRow> {
    let p = reader(ctx)?;
    let id: LicenceId = parse_id("id", id)?;
    let tx = licensing.store.begin(&p.scope).await?;
    let row = licence_rows::get(&tx, &p.scope, id.as_str()).await?;
    tx.commit().await?;
    row.ok_or(ApiError::not_found("licence"))
}

/// Licences in the caller's scope (of one tenant, when given).
pub async fn list(
    licensing: &Licensing,
    ctx: &RequestCtx,
    tenant_id: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<LicenceRow>> {
    let p = reader(ctx)?;
    let tenant = tenant_id
        .map(|t| parse_id::<TenantId>("tenantId", t))
        .transpose()?;
    let tx = licensing.store.begin(&p.scope).await?;
    let page =
        licence_rows::list(&tx, &p.scope, tenant.as_ref().map(TenantId::as_str), page).await?;
    tx.commit().await?;
    Ok(page)
}

/// The live seats of a licence in the caller's scope.
pub async fn seats(
    licensing: &Licensing,
    ctx: &RequestCtx,
    licence_id: &str,
) -> ApiResult<Vec<ActivationRow>> {
    let p = reader(ctx)?;
    let tx = licensing.store.begin(&p.scope).await?;
    let seats = licence_rows::live_activations(&tx, &p.scope, licence_id).await?;
    tx.commit().await?;
    Ok(seats)
}

/// The signed licence file of a live licence: its plugin and tier, the
/// features the tier grants (with their enforcement), its seats, and a
/// validity of [`FILE_VALIDITY`] (never past a trial's end) with
/// [`GRACE`] after it.
pub async fn licence_file(
    licensing: &Licensing,
    ctx: &RequestCtx,
    id: &str,
) -> ApiResult<(LicenceRow, String)> {
    let p = reader(ctx)?;
    let id: LicenceId = parse_id("id", id)?;
    let now = licensing.clock.now();
    let tx = licensing.store.begin(&p.scope).await?;
    let row = licence_rows::get(&tx, &p.scope, id.as_str())
        .await?
        .ok_or(ApiError::not_found("licence"))?;
    live(&row, now)?;
    let entry = plugin_rows::get(&tx, &row.plugin_id)
        .await?
        .ok_or_else(|| ApiError::internal("a licence's plugin is gone"))?;
    let seats = licence_rows::live_activations(&tx, &p.scope, &row.id).await?;
    tx.commit().await?;
    // The list is the platform's (its newest sequence names no tenant); read
    // after the tenant's transaction ends (SQLite has one connection).
    let system = licensing.store.begin(&Scope::All).await?;
    let revocation_seq = licence_rows::latest_sequence(&system).await?;
    system.commit().await?;
    let features: BTreeMap<String, FeatureGrant> = granted(&entry, row.tier)?
        .into_iter()
        .map(|f| {
            (
                f.name,
                FeatureGrant {
                    enforcement: f.enforcement,
                },
            )
        })
        .collect();
    let expires = row
        .ends_at
        .map_or(now + FILE_VALIDITY, |end| end.min(now + FILE_VALIDITY));
    // A trial ends at its end: no grace after it.
    let grace = if row.kind == LicenceKind::Trial {
        expires
    } else {
        expires + GRACE
    };
    let payload = LicencePayload {
        licence_id: row.id.clone(),
        tenant_id: row.tenant_id.clone(),
        instance_ids: seats.into_iter().map(|s| s.instance_id).collect(),
        plugins: vec![PluginGrant {
            plugin: entry.plugin.slug.clone(),
            tier: row.tier.as_str().to_owned(),
            trial: row.kind == LicenceKind::Trial,
        }],
        features,
        limits: BTreeMap::from([("activations".to_owned(), i64::from(row.activation_limit))]),
        issued_at: now.timestamp(),
        not_before: row.starts_at.timestamp(),
        refresh_after: (now + REFRESH_AFTER).min(expires).timestamp(),
        expires_at: expires.timestamp(),
        grace_until: grace.timestamp(),
        revocation_seq: u64::try_from(revocation_seq).unwrap_or(0),
    };
    let signer = licensing.signing.signer().await?;
    let file = signer
        .sign_json(Kind::Licence, &payload)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((row, file))
}

/// The signed revocation list (anyone signed in, or a `license:read` key).
pub async fn revocation_list(licensing: &Licensing, ctx: &RequestCtx) -> ApiResult<String> {
    reader(ctx)?;
    let now = licensing.clock.now();
    // The list is published to every instance: it names licence ids only.
    let tx = licensing.store.begin(&Scope::All).await?;
    let sequence = licence_rows::latest_sequence(&tx).await?;
    let revoked = licence_rows::revoked_ids(&tx).await?;
    tx.commit().await?;
    let list = RevocationList {
        sequence: u64::try_from(sequence).unwrap_or(0),
        issued_at: now.timestamp(),
        revoked: revoked.into_iter().collect(),
    };
    let signer = licensing.signing.signer().await?;
    signer
        .sign_json(Kind::Revocations, &list)
        .map_err(|e| ApiError::internal(e.to_string()))
}

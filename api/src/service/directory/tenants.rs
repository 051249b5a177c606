//! Tenant use cases: onboarding, updates and lifecycle transitions, each one
//! transaction with its audit record, followed by a [`TenantEvent`].

use dotmac_schema::{
    slug_from_name, validate_slug, ResellerId, ResourceTier, Role, Scope, TenantAction, TenantId,
    TenantState,
};

use super::Directory;
use crate::bus::{BusEvent, TenantEvent};
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::{email, parse_id, reason, required_text};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::entity::tenant;
use crate::store::reseller_rows;
use crate::store::tenant_rows::{self, TenantRow};
use crate::store::Tx;

#[derive(Debug, Default, Clone)]
pub struct NewTenant {
    pub name: String,
    pub slug: Option<String>,
    pub tier: Option<ResourceTier>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub reseller_id: Option<String>,
    /// ISO 3166 code whose tax rate applies (platform admins only).
    pub tax_jurisdiction: Option<String>,
}

#[derive(Debug, Default, Clone)]
pub struct TenantPatch {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub tier: Option<ResourceTier>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    /// A code sets it, an empty string clears it (platform admins only).
    pub tax_jurisdiction: Option<String>,
}

const NAME_MAX: usize = 200;

/// A tax jurisdiction as set by `role`: where a tenant is taxed is the
/// platform's decision (it sets what every invoice charges), so only
/// platform admins set it; an empty code clears it.
fn tax_jurisdiction(role: Option<Role>, code: &str) -> ApiResult<Option<String>> {
    if role != Some(Role::PlatformAdmin) {
        return Err(ApiError::Forbidden(
            "input.taxJurisdiction: only platform admins set tax jurisdictions".into(),
        ));
    }
    if code.trim().is_empty() {
        return Ok(None);
    }
    dotmac_billing::parse_jurisdiction(code)
        .map(Some)
        .map_err(|e| ApiError::validation("input.taxJurisdiction", e.to_string()))
}

pub async fn create(
    directory: &Directory,
    ctx: &RequestCtx,
    input: NewTenant,
) -> ApiResult<TenantRow> {
    let p = ctx.writer_with(&[
        Role::PlatformAdmin,
        Role::ResellerAdmin,
        Role::ResellerAgent,
    ])?;
    let name = required_text("input.name", &input.name, NAME_MAX)?;
    let slug = match input.slug.as_deref() {
        Some(s) => {
            validate_slug(s).map_err(|e| ApiError::bad_slug("input.slug", e))?;
            s.to_owned()
        }
        None => slug_from_name(&name).map_err(|e| ApiError::bad_slug("input.slug", e))?,
    };
    let contact_email = input
        .contact_email
        .as_deref()
        .map(|e| email("input.contactEmail", e))
        .transpose()?;
    let contact_name = input
        .contact_name
        .as_deref()
        .map(|n| required_text("input.contactName", n, NAME_MAX))
        .transpose()?;
    let tax_jurisdiction = match input.tax_jurisdiction.as_deref() {
        Some(code) => tax_jurisdiction(p.role(), code)?,
        None => None,
    };
    let requested: Option<ResellerId> = input
        .reseller_id
        .as_deref()
        .map(|r| parse_id("input.resellerId", r))
        .transpose()?;
    let tx = directory.store.begin(&p.scope).await?;
    // A reseller's user onboards tenants for that reseller only; naming
    // another reseller is indistinguishable from naming one that does not exist.
    let reseller_id = match (&p.scope, requested) {
        (Scope::Reseller(own), None) => Some(own.clone()),
        (Scope::Reseller(own), Some(r)) if &r == own => Some(r),
        (Scope::Reseller(_), Some(_)) => return Err(ApiError::not_found("reseller")),
        (_, Some(r)) => {
            reseller_rows::get(&tx, &p.scope, &r).await?;
            Some(r)
        }
        (_, None) => None,
    };
    let now = directory.clock.now();
    let row = TenantRow {
        id: TenantId::new().to_string(),
        name,
        slug,
        state: TenantState::Pending,
        state_reason: None,
        tier: input.tier.unwrap_or_default(),
        contact_name,
        contact_email,
        reseller_id: reseller_id.map(|r| r.to_string()),
        created_at: now,
        updated_at: now,
        tax_jurisdiction,
        state_changed_at: Some(now),
    };
    let row = tenant_rows::insert(&tx, row).await?;
    audit_log::record(
        &tx,
        directory.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "tenant.create",
            tenant_id: Some(row.id.clone()),
            reseller_id: row.reseller_id.clone(),
            object_id: Some(row.id.clone()),
            before: None,
            after: Some(row.state.as_str().to_owned()),
        },
    )
    .await?;
    announce(&tx, directory, &row, None, None, None, p.actor()).await?;
    tx.commit().await?;
    directory.outbox.committed();
    Ok(row)
}

pub async fn update(
    directory: &Directory,
    ctx: &RequestCtx,
    id: &str,
    patch: TenantPatch,
) -> ApiResult<TenantRow> {
    let p = ctx.writer_with(&[
        Role::PlatformAdmin,
        Role::ResellerAdmin,
        Role::ResellerAgent,
        Role::TenantAdmin,
    ])?;
    let id: TenantId = parse_id("id", id)?;
    use sea_orm::ActiveValue::Set;
    // Validate everything before touching the store.
    let mut changes = tenant::ActiveModel::default();
    if let Some(n) = patch.name.as_deref() {
        changes.name = Set(required_text("input.name", n, NAME_MAX)?);
    }
    // The slug and the tier shape the tenant's instance: operators' business.
    if patch.slug.is_some() || patch.tier.is_some() {
        if p.role() == Some(Role::TenantAdmin) {
            return Err(ApiError::Forbidden(
                "a tenant admin may not change slug or tier".into(),
            ));
        }
        if let Some(s) = patch.slug.as_deref() {
            validate_slug(s).map_err(|e| ApiError::bad_slug("input.slug", e))?;
            changes.slug = Set(s.to_owned());
        }
        if let Some(t) = patch.tier {
            changes.tier = Set(t);
        }
    }
    if let Some(n) = patch.contact_name.as_deref() {
        changes.contact_name = Set(Some(required_text("input.contactName", n, NAME_MAX)?));
    }
    if let Some(e) = patch.contact_email.as_deref() {
        changes.contact_email = Set(Some(email("input.contactEmail", e)?));
    }
    if let Some(code) = patch.tax_jurisdiction.as_deref() {
        changes.tax_jurisdiction = Set(tax_jurisdiction(p.role(), code)?);
    }
    changes.updated_at = Set(directory.clock.now());
    let tx = directory.store.begin(&p.scope).await?;
    let before = tenant_rows::get(&tx, &p.scope, &id).await?;
    let row = tenant_rows::update_columns(&tx, &p.scope, &id, changes).await?;
    if row.tier != before.tier {
        // Re-tiering updates the instance's quota in place.
        super::instances::want(&tx, directory, &p.scope, &row, None).await?;
    }
    let describe = |t: &TenantRow| {
        format!(
            "name={}|slug={}|tier={}|contact={}<{}>|tax={}",
            t.name,
            t.slug,
            t.tier.as_str(),
            t.contact_name.as_deref().unwrap_or(""),
            t.contact_email.as_deref().unwrap_or(""),
            t.tax_jurisdiction.as_deref().unwrap_or("")
        )
    };
    audit_log::record(
        &tx,
        directory.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "tenant.update",
            tenant_id: Some(row.id.clone()),
            reseller_id: row.reseller_id.clone(),
            object_id: Some(row.id.clone()),
            before: Some(describe(&before)),
            after: Some(describe(&row)),
        },
    )
    .await?;
    tx.commit().await?;
    if let Some(o) = &directory.orchestration {
        o.committed();
    }
    Ok(row)
}

/// The reason dunning suspends a tenant under; only the platform (or
/// dunning, once paid) lifts such a suspension.
pub const NON_PAYMENT: &str = "dunning: invoice unpaid past its grace";

/// Applies one lifecycle action through the state machine of `schema`.
pub async fn transition(
    directory: &Directory,
    ctx: &RequestCtx,
    id: &str,
    action: TenantAction,
    why: Option<&str>,
) -> ApiResult<TenantRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin, Role::ResellerAdmin])?;
    let id: TenantId = parse_id("id", id)?;
    let needs_reason = matches!(
        action,
        TenantAction::Suspend | TenantAction::Cancel | TenantAction::MarkFailed
    );
    let why = reason(why, needs_reason)?;
    let tx = directory.store.begin(&p.scope).await?;
    let before = tenant_rows::get(&tx, &p.scope, &id).await?;
    let from = before.state;
    let to = from.apply(action)?;
    // A tenant suspended for not paying is reactivated by paying (dunning)
    // or by the platform, never by the reseller who sells to it.
    if action == TenantAction::Reactivate
        && before.state_reason.as_deref() == Some(NON_PAYMENT)
        && p.role() != Some(Role::PlatformAdmin)
    {
        return Err(ApiError::Forbidden(
            "this tenant was suspended for non-payment: it is reactivated when its invoices are paid, or by the platform".into(),
        ));
    }
    if !tenant_rows::compare_and_set_state(
        &tx,
        &p.scope,
        &id,
        from,
        to,
        why.clone(),
        directory.clock.now(),
    )
    .await?
    {
        return Err(ApiError::conflict(
            "id",
            "the tenant changed state while this request ran; read it again and retry",
        ));
    }
    let row = tenant_rows::get(&tx, &p.scope, &id).await?;
    // The instance follows the lifecycle: its wish commits with the change.
    super::instances::want(&tx, directory, &p.scope, &row, Some(action)).await?;
    audit_log::record(
        &tx,
        directory.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: action_name(action),
            tenant_id: Some(row.id.clone()),
            reseller_id: row.reseller_id.clone(),
            object_id: Some(row.id.clone()),
            before: Some(from.as_str().to_owned()),
            after: Some(to.as_str().to_owned()),
        },
    )
    .await?;
    announce(
        &tx,
        directory,
        &row,
        Some(from),
        Some(action),
        why,
        p.actor(),
    )
    .await?;
    tx.commit().await?;
    directory.standing.forget_tenant(&row.id);
    directory.outbox.committed();
    if let Some(o) = &directory.orchestration {
        o.committed();
    }
    Ok(row)
}

fn action_name(a: TenantAction) -> &'static str {
    match a {
        TenantAction::Provision => "tenant.provision",
        TenantAction::Activate => "tenant.activate",
        TenantAction::MarkFailed => "tenant.mark_failed",
        TenantAction::Suspend => "tenant.suspend",
        TenantAction::Reactivate => "tenant.reactivate",
        TenantAction::StartMaintenance => "tenant.start_maintenance",
        TenantAction::Cancel => "tenant.cancel",
        TenantAction::Deprovision => "tenant.deprovision",
    }
}

/// Records the change's announcement in its transaction (the outbox): it is
/// published if and only if the change commits, whatever happens after.
async fn announce(
    tx: &Tx,
    directory: &Directory,
    row: &TenantRow,
    from: Option<TenantState>,
    action: Option<TenantAction>,
    reason: Option<String>,
    actor: String,
) -> ApiResult<()> {
    let to = row.state;
    let event = TenantEvent {
        tenant_id: row.id.clone(),
        reseller_id: row.reseller_id.clone(),
        from,
        to,
        action,
        reason,
        actor,
        at: directory.clock.now(),
    };
    directory
        .outbox
        .record(tx, &[BusEvent::Tenant(event)])
        .await
}

/// Seeding helper: a tenant straight into `state` via the legal path.
pub async fn seed_into_state(
    directory: &Directory,
    ctx: &RequestCtx,
    id: &str,
    state: TenantState,
) -> ApiResult<()> {
    let path: &[TenantAction] = match state {
        TenantState::Pending => &[],
        TenantState::Active => &[TenantAction::Provision, TenantAction::Activate],
        TenantState::Suspended => &[
            TenantAction::Provision,
            TenantAction::Activate,
            TenantAction::Suspend,
        ],
        _ => return Err(ApiError::internal("unsupported seed state")),
    };
    for a in path {
        transition(directory, ctx, id, *a, Some("demo seed")).await?;
    }
    Ok(())
}

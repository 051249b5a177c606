//! Tenants' licences, their tier changes, activations, and the revocation
//! list. Licences, changes and activations are tenant-owned (every query
//! filters by the caller's scope; row-level security again on Postgres).

use chrono::{DateTime, Utc};
use dotmac_schema::{LicenceState, PluginTier, Scope};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::entity::{licence, licence_activation, licence_revocation, licence_tier_change};
use super::{
    fetch_page, insert_unique, is_unique_violation, owned_by_tenant_in, Page, PageRequest, Tx,
};
use crate::error::{ApiError, ApiResult};

pub use licence::Model as LicenceRow;
pub use licence_activation::Model as ActivationRow;
pub use licence_revocation::Model as RevocationRow;
pub use licence_tier_change::Model as TierChangeRow;

/// Records a new licence. CONFLICT when the tenant already had its trial
/// of the plugin, or holds a live licence of it.
pub async fn insert(tx: &Tx, row: LicenceRow) -> ApiResult<LicenceRow> {
    let (field, reason) = if row.kind == dotmac_schema::LicenceKind::Trial {
        (
            "input.kind",
            "this tenant has had its trial of this plugin: take a paid licence",
        )
    } else {
        (
            "input.plugin",
            "this tenant holds a licence of this plugin already: change its tier instead",
        )
    };
    insert_unique(
        tx,
        licence::ActiveModel::from(row).reset_all(),
        field,
        reason,
    )
    .await
}

pub async fn get(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<Option<LicenceRow>> {
    Ok(licence::Entity::find_by_id(id)
        .filter(owned_by_tenant_in(scope, licence::Column::TenantId))
        .one(tx)
        .await?)
}

/// The tenant's live licence of `plugin_id`, if any.
pub async fn live_of(
    tx: &Tx,
    scope: &Scope,
    tenant_id: &str,
    plugin_id: &str,
) -> ApiResult<Option<LicenceRow>> {
    Ok(licence::Entity::find()
        .filter(licence::Column::TenantId.eq(tenant_id))
        .filter(licence::Column::PluginId.eq(plugin_id))
        .filter(licence::Column::State.eq(LicenceState::Active))
        .filter(owned_by_tenant_in(scope, licence::Column::TenantId))
        .one(tx)
        .await?)
}

/// Licences in `scope` (of one tenant, when given), a page at a time.
pub async fn list(
    tx: &Tx,
    scope: &Scope,
    tenant_id: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<LicenceRow>> {
    let mut q =
        licence::Entity::find().filter(owned_by_tenant_in(scope, licence::Column::TenantId));
    if let Some(t) = tenant_id {
        q = q.filter(licence::Column::TenantId.eq(t));
    }
    fetch_page(tx, q, licence::Column::Id, page).await
}

/// Every live licence of a tenant (for its licence file and entitlements).
pub async fn live_of_tenant(tx: &Tx, scope: &Scope, tenant_id: &str) -> ApiResult<Vec<LicenceRow>> {
    Ok(licence::Entity::find()
        .filter(licence::Column::TenantId.eq(tenant_id))
        .filter(licence::Column::State.eq(LicenceState::Active))
        .filter(owned_by_tenant_in(scope, licence::Column::TenantId))
        .order_by_asc(licence::Column::Id)
        .all(tx)
        .await?)
}

/// Every licence a tenant ever held, live or not (its entitlements'
/// version counts them).
pub async fn all_of_tenant(tx: &Tx, scope: &Scope, tenant_id: &str) -> ApiResult<Vec<LicenceRow>> {
    Ok(licence::Entity::find()
        .filter(licence::Column::TenantId.eq(tenant_id))
        .filter(owned_by_tenant_in(scope, licence::Column::TenantId))
        .order_by_asc(licence::Column::Id)
        .all(tx)
        .await?)
}

/// How many tier changes a tenant's licences have had.
pub async fn tier_change_count(tx: &Tx, scope: &Scope, tenant_id: &str) -> ApiResult<u64> {
    Ok(licence_tier_change::Entity::find()
        .filter(licence_tier_change::Column::TenantId.eq(tenant_id))
        .filter(owned_by_tenant_in(
            scope,
            licence_tier_change::Column::TenantId,
        ))
        .count(tx)
        .await?)
}

/// Takes the licence's row lock (a write, so it also serializes SQLite):
/// seat counting and state changes of one licence happen one at a time.
pub async fn lock(tx: &Tx, scope: &Scope, id: &str, now: DateTime<Utc>) -> ApiResult<LicenceRow> {
    let touched = licence::Entity::update_many()
        .col_expr(licence::Column::UpdatedAt, Expr::value(now))
        .filter(licence::Column::Id.eq(id))
        .filter(owned_by_tenant_in(scope, licence::Column::TenantId))
        .exec(tx)
        .await?;
    if touched.rows_affected == 0 {
        return Err(ApiError::not_found("licence"));
    }
    get(tx, scope, id)
        .await?
        .ok_or(ApiError::not_found("licence"))
}

/// Writes a licence's tier, state and end (its row is locked).
pub async fn update(tx: &Tx, row: LicenceRow) -> ApiResult<LicenceRow> {
    Ok(licence::ActiveModel::from(row)
        .reset_all()
        .update(tx)
        .await?)
}

pub async fn record_tier_change(tx: &Tx, row: TierChangeRow) -> ApiResult<()> {
    licence_tier_change::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?;
    Ok(())
}

/// A licence's tier changes, oldest first.
pub async fn tier_changes(
    tx: &Tx,
    scope: &Scope,
    licence_id: &str,
) -> ApiResult<Vec<TierChangeRow>> {
    Ok(licence_tier_change::Entity::find()
        .filter(licence_tier_change::Column::LicenceId.eq(licence_id))
        .filter(owned_by_tenant_in(
            scope,
            licence_tier_change::Column::TenantId,
        ))
        .order_by_asc(licence_tier_change::Column::EffectiveAt)
        .order_by_asc(licence_tier_change::Column::Id)
        .all(tx)
        .await?)
}

/// The live activations (seats taken) of a licence.
pub async fn live_activations(
    tx: &Tx,
    scope: &Scope,
    licence_id: &str,
) -> ApiResult<Vec<ActivationRow>> {
    Ok(licence_activation::Entity::find()
        .filter(licence_activation::Column::LicenceId.eq(licence_id))
        .filter(licence_activation::Column::DeactivatedAt.is_null())
        .filter(owned_by_tenant_in(
            scope,
            licence_activation::Column::TenantId,
        ))
        .order_by_asc(licence_activation::Column::ActivatedAt)
        .all(tx)
        .await?)
}

pub async fn insert_activation(tx: &Tx, row: ActivationRow) -> ApiResult<ActivationRow> {
    insert_unique(
        tx,
        licence_activation::ActiveModel::from(row).reset_all(),
        "instanceId",
        "this instance holds a seat of this licence already",
    )
    .await
}

/// Frees the seats of `instance_id` (every one, when `None`). How many.
pub async fn deactivate(
    tx: &Tx,
    scope: &Scope,
    licence_id: &str,
    instance_id: Option<&str>,
    now: DateTime<Utc>,
) -> ApiResult<u64> {
    let mut q = licence_activation::Entity::update_many()
        .col_expr(
            licence_activation::Column::DeactivatedAt,
            Expr::value(Some(now)),
        )
        .filter(licence_activation::Column::LicenceId.eq(licence_id))
        .filter(licence_activation::Column::DeactivatedAt.is_null())
        .filter(owned_by_tenant_in(
            scope,
            licence_activation::Column::TenantId,
        ));
    if let Some(i) = instance_id {
        q = q.filter(licence_activation::Column::InstanceId.eq(i));
    }
    Ok(q.exec(tx).await?.rows_affected)
}

/// Appends a revocation at the next sequence. Platform scope.
pub async fn revoke(
    tx: &Tx,
    licence_id: &str,
    tenant_id: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> ApiResult<i64> {
    let sequence = latest_sequence(tx).await? + 1;
    licence_revocation::ActiveModel::from(RevocationRow {
        sequence,
        licence_id: licence_id.to_owned(),
        tenant_id: tenant_id.to_owned(),
        reason: reason.to_owned(),
        revoked_at: now,
    })
    .reset_all()
    .insert(tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            ApiError::conflict(
                "id",
                "revoked already, or another revocation was written at once: retry",
            )
        } else {
            ApiError::from(e)
        }
    })?;
    Ok(sequence)
}

/// The newest revocation's sequence (0 for none).
pub async fn latest_sequence(tx: &Tx) -> ApiResult<i64> {
    let latest: Option<i64> = licence_revocation::Entity::find()
        .select_only()
        .column_as(licence_revocation::Column::Sequence.max(), "latest")
        .into_tuple()
        .one(tx)
        .await?
        .flatten();
    Ok(latest.unwrap_or(0))
}

/// Every revoked licence id (the list an instance holds).
pub async fn revoked_ids(tx: &Tx) -> ApiResult<Vec<String>> {
    Ok(licence_revocation::Entity::find()
        .select_only()
        .column(licence_revocation::Column::LicenceId)
        .into_tuple()
        .all(tx)
        .await?)
}

/// Whether any live licence of `plugin_id` is at one of `tiers`
/// (platform scope: a catalog change asks across tenants).
pub async fn any_live_at(tx: &Tx, plugin_id: &str, tiers: &[PluginTier]) -> ApiResult<bool> {
    Ok(licence::Entity::find()
        .filter(licence::Column::PluginId.eq(plugin_id))
        .filter(licence::Column::State.eq(LicenceState::Active))
        .filter(licence::Column::Tier.is_in(tiers.iter().copied()))
        .count(tx)
        .await?
        > 0)
}

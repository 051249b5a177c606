//! Rows of `tenant_instances`: the spec the control plane wants of each
//! tenant's instance (bumped in the transaction of the change that wants
//! it), the generation the cluster was told, and what it last reported.

use chrono::{DateTime, Utc};
use dotmac_schema::{Scope, TenantId};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entity::tenant_instance::{ActiveModel, Column, Entity, Model};
use super::{owned_by_tenant_in, Tx};
use crate::error::ApiResult;

pub type InstanceRow = Model;

/// The row of one tenant in `scope`, if its instance was ever wanted.
pub async fn get(tx: &Tx, scope: &Scope, id: &TenantId) -> ApiResult<Option<InstanceRow>> {
    Ok(Entity::find_by_id(id.as_str())
        .filter(owned_by_tenant_in(scope, Column::TenantId))
        .one(tx)
        .await?)
}

/// The rows of several tenants (a page of them) in `scope`.
pub async fn get_many(tx: &Tx, scope: &Scope, ids: &[String]) -> ApiResult<Vec<InstanceRow>> {
    Ok(Entity::find()
        .filter(Column::TenantId.is_in(ids.iter().cloned()))
        .filter(owned_by_tenant_in(scope, Column::TenantId))
        .all(tx)
        .await?)
}

/// Records a new wanted spec (JSON) for the tenant: a new generation the
/// sync will carry to the cluster.
pub async fn desire(
    tx: &Tx,
    scope: &Scope,
    tenant_id: &str,
    desired: String,
    delete_requested: bool,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    let current = Entity::find_by_id(tenant_id)
        .filter(owned_by_tenant_in(scope, Column::TenantId))
        .one(tx)
        .await?;
    match current {
        Some(row) => {
            if row.desired == desired && row.delete_requested == delete_requested {
                return Ok(());
            }
            Entity::update_many()
                .col_expr(Column::Desired, Expr::value(desired))
                .col_expr(Column::DeleteRequested, Expr::value(delete_requested))
                .col_expr(
                    Column::DesiredGeneration,
                    Expr::col(Column::DesiredGeneration).add(1),
                )
                .col_expr(Column::UpdatedAt, Expr::value(now))
                .filter(Column::TenantId.eq(tenant_id))
                .exec(tx)
                .await?;
        }
        None => {
            Entity::insert(ActiveModel {
                tenant_id: Set(tenant_id.to_owned()),
                desired: Set(desired),
                desired_generation: Set(1),
                synced_generation: Set(0),
                delete_requested: Set(delete_requested),
                sync_error: Set(None),
                phase: Set(None),
                observed: Set(None),
                observed_at: Set(None),
                secrets_rotated_at: Set(Some(now)),
                updated_at: Set(now),
            })
            .exec(tx)
            .await?;
        }
    }
    Ok(())
}

/// Up to `limit` rows the cluster was not told yet, oldest change first.
pub async fn unsynced(tx: &Tx, limit: u64) -> ApiResult<Vec<InstanceRow>> {
    Ok(Entity::find()
        .filter(Expr::col(Column::SyncedGeneration).lt(Expr::col(Column::DesiredGeneration)))
        .order_by_asc(Column::UpdatedAt)
        .limit(limit)
        .all(tx)
        .await?)
}

/// The cluster was told `generation`: recorded unless a later one was.
pub async fn mark_synced(tx: &Tx, tenant_id: &str, generation: i64) -> ApiResult<()> {
    Entity::update_many()
        .col_expr(Column::SyncedGeneration, Expr::value(generation))
        .col_expr(Column::SyncError, Expr::value(Option::<String>::None))
        .filter(Column::TenantId.eq(tenant_id))
        .filter(Column::SyncedGeneration.lt(generation))
        .exec(tx)
        .await?;
    Ok(())
}

/// Why telling the cluster failed; the sync tries again.
pub async fn mark_sync_failed(tx: &Tx, tenant_id: &str, error: String) -> ApiResult<()> {
    Entity::update_many()
        .col_expr(Column::SyncError, Expr::value(Some(error)))
        .filter(Column::TenantId.eq(tenant_id))
        .exec(tx)
        .await?;
    Ok(())
}

/// What the cluster reported; returns whether anything changed.
pub async fn observe(
    tx: &Tx,
    tenant_id: &str,
    phase: &str,
    observed: String,
    now: DateTime<Utc>,
) -> ApiResult<bool> {
    let changed = Entity::update_many()
        .col_expr(Column::Phase, Expr::value(Some(phase.to_owned())))
        .col_expr(Column::Observed, Expr::value(Some(observed.clone())))
        .col_expr(Column::ObservedAt, Expr::value(Some(now)))
        .filter(Column::TenantId.eq(tenant_id))
        .filter(Column::Observed.is_null().or(Column::Observed.ne(observed)))
        .exec(tx)
        .await?
        .rows_affected;
    Ok(changed > 0)
}

/// Every instance row in `scope`, by tenant id (a rollout's plan).
pub async fn all(tx: &Tx, scope: &Scope) -> ApiResult<Vec<InstanceRow>> {
    Ok(Entity::find()
        .filter(owned_by_tenant_in(scope, Column::TenantId))
        .order_by_asc(Column::TenantId)
        .all(tx)
        .await?)
}

/// The tenant's secrets were rotated at `now`.
pub async fn mark_rotated(tx: &Tx, tenant_id: &str, now: DateTime<Utc>) -> ApiResult<()> {
    Entity::update_many()
        .col_expr(Column::SecretsRotatedAt, Expr::value(Some(now)))
        .filter(Column::TenantId.eq(tenant_id))
        .exec(tx)
        .await?;
    Ok(())
}

/// Up to `limit` live instances (platform-wide) whose secrets are older than
/// `cutoff`, oldest first: the rotation schedule's work.
pub async fn due_for_rotation(
    tx: &Tx,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> ApiResult<Vec<InstanceRow>> {
    Ok(Entity::find()
        .filter(Column::DeleteRequested.eq(false))
        .filter(Column::SecretsRotatedAt.lt(cutoff))
        .order_by_asc(Column::SecretsRotatedAt)
        .limit(limit)
        .all(tx)
        .await?)
}

//! Plan rows: insert (a version once), read, and list in scope.

use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::PlanRow;
use crate::error::{ApiError, ApiResult};
use crate::store::entity::{plan, subscription};
use crate::store::{fetch_page, owned_by_tenant_in, Page, PageRequest, Tx};
use dotmac_schema::Scope;

pub async fn insert_plan(tx: &Tx, row: PlanRow) -> ApiResult<PlanRow> {
    plan::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await
        .map_err(|e| {
            if crate::store::is_unique_violation(&e) {
                ApiError::conflict("input.version", "this plan version already exists")
            } else {
                e.into()
            }
        })
}

pub async fn all_plans(tx: &Tx) -> ApiResult<Vec<PlanRow>> {
    Ok(plan::Entity::find()
        .order_by_asc(plan::Column::Slug)
        .order_by_asc(plan::Column::Version)
        .all(tx)
        .await?)
}

pub async fn get_plan(tx: &Tx, id: &str) -> ApiResult<PlanRow> {
    plan::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("plan"))
}

/// Plans visible in `scope`: the whole catalogue for the platform; for a
/// tenant or a reseller, the plans its subscriptions use (a plan may carry
/// one customer's negotiated prices).
pub async fn list_plans(tx: &Tx, scope: &Scope, page: PageRequest<'_>) -> ApiResult<Page<PlanRow>> {
    let mut q = plan::Entity::find();
    if !matches!(scope, Scope::All) {
        let used: Vec<String> = subscription::Entity::find()
            .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
            .all(tx)
            .await?
            .into_iter()
            .map(|s| s.plan_id)
            .collect();
        q = q.filter(plan::Column::Id.is_in(used));
    }
    fetch_page(tx, q, plan::Column::Id, page).await
}

/// A plan visible in `scope` (see [`list_plans`]), or NOT_FOUND.
pub async fn get_plan_in(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<PlanRow> {
    let row = get_plan(tx, id).await?;
    if !matches!(scope, Scope::All) {
        let used = subscription::Entity::find()
            .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
            .filter(subscription::Column::PlanId.eq(id))
            .one(tx)
            .await?;
        if used.is_none() {
            return Err(ApiError::not_found("plan"));
        }
    }
    Ok(row)
}

//! API key rows: stored as a public prefix plus a hash of the secret.

use chrono::{DateTime, Utc};
use dotmac_schema::{ApiKeyId, Scope};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entity::api_key;
use super::{into_page, owned_by_tenant_in, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};

pub use api_key::Model as ApiKeyRow;

pub async fn insert(tx: &Tx, row: ApiKeyRow) -> ApiResult<ApiKeyRow> {
    Ok(api_key::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

pub async fn get(tx: &Tx, scope: &Scope, id: &ApiKeyId) -> ApiResult<ApiKeyRow> {
    api_key::Entity::find_by_id(id.as_str())
        .filter(owned_by_tenant_in(scope, api_key::Column::TenantId))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("api key"))
}

pub async fn list(
    tx: &Tx,
    scope: &Scope,
    tenant_id: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<ApiKeyRow>> {
    let mut q =
        api_key::Entity::find().filter(owned_by_tenant_in(scope, api_key::Column::TenantId));
    if let Some(t) = tenant_id {
        q = q.filter(api_key::Column::TenantId.eq(t));
    }
    if let Some(after) = page.after {
        q = q.filter(api_key::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(api_key::Column::Id)
        .limit(page.first + 1)
        .all(tx)
        .await?;
    Ok(into_page(rows, page.first))
}

/// Authentication of a service credential: found by its public prefix.
pub async fn find_by_prefix_system(tx: &Tx, prefix: &str) -> ApiResult<Option<ApiKeyRow>> {
    Ok(api_key::Entity::find()
        .filter(api_key::Column::Prefix.eq(prefix))
        .one(tx)
        .await?)
}

pub async fn touch(tx: &Tx, row: &ApiKeyRow, now: DateTime<Utc>) -> ApiResult<()> {
    let mut active: api_key::ActiveModel = row.clone().into();
    active.last_used_at = Set(Some(now));
    active.update(tx).await?;
    Ok(())
}

pub async fn revoke(tx: &Tx, row: &ApiKeyRow, now: DateTime<Utc>) -> ApiResult<ApiKeyRow> {
    let mut active: api_key::ActiveModel = row.clone().into();
    active.revoked_at = Set(Some(now));
    Ok(active.update(tx).await?)
}

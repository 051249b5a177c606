//! Reseller rows: create, read, list, and batched look-up for nested fields.

use dotmac_schema::{ResellerId, Scope};
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entity::reseller;
use super::{into_page, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};

pub use reseller::Model as ResellerRow;

fn visible(scope: &Scope) -> sea_orm::Condition {
    match scope {
        Scope::All => sea_orm::Condition::all(),
        Scope::Reseller(r) => sea_orm::Condition::all().add(reseller::Column::Id.eq(r.as_str())),
        // A tenant's users do not read reseller records.
        Scope::Tenant(_) => sea_orm::Condition::all().add(reseller::Column::Id.is_null()),
    }
}

pub async fn get(tx: &Tx, scope: &Scope, id: &ResellerId) -> ApiResult<ResellerRow> {
    reseller::Entity::find_by_id(id.as_str())
        .filter(visible(scope))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("reseller"))
}

pub async fn get_many(tx: &Tx, scope: &Scope, ids: &[String]) -> ApiResult<Vec<ResellerRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(reseller::Entity::find()
        .filter(reseller::Column::Id.is_in(ids.iter().map(String::as_str)))
        .filter(visible(scope))
        .all(tx)
        .await?)
}

pub async fn list(tx: &Tx, scope: &Scope, page: PageRequest<'_>) -> ApiResult<Page<ResellerRow>> {
    let mut q = reseller::Entity::find().filter(visible(scope));
    if let Some(after) = page.after {
        q = q.filter(reseller::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(reseller::Column::Id)
        .limit(page.first + 1)
        .all(tx)
        .await?;
    Ok(into_page(rows, page.first))
}

pub async fn insert(tx: &Tx, row: ResellerRow) -> ApiResult<ResellerRow> {
    Ok(reseller::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

//! Meter rows. Meters are the platform's catalogue, not tenant data: every
//! scope reads every meter (which meters apply to which tenant arrives with
//! plugin licensing); only platform admins write them.

use chrono::{DateTime, Utc};
use dotmac_schema::{MeterId, Scope};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entity::meter;
use super::{into_page, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};

pub use meter::Model as MeterRow;

pub async fn insert(tx: &Tx, row: MeterRow) -> ApiResult<MeterRow> {
    super::insert_unique(
        tx,
        meter::ActiveModel::from(row).reset_all(),
        "input.slug",
        "a meter with this slug already exists",
    )
    .await
}

/// Of `slugs`, those that name no meter in use (missing or archived).
pub async fn unknown_slugs<'a>(tx: &Tx, slugs: &[&'a str]) -> ApiResult<Vec<&'a str>> {
    if slugs.is_empty() {
        return Ok(Vec::new());
    }
    let known: Vec<String> = meter::Entity::find()
        .select_only()
        .column(meter::Column::Slug)
        .filter(meter::Column::Slug.is_in(slugs.iter().copied()))
        .filter(meter::Column::ArchivedAt.is_null())
        .into_tuple()
        .all(tx)
        .await?;
    Ok(slugs
        .iter()
        .copied()
        .filter(|s| !known.iter().any(|k| k == s))
        .collect())
}

pub async fn get(tx: &Tx, _scope: &Scope, id: &MeterId) -> ApiResult<MeterRow> {
    meter::Entity::find_by_id(id.as_str())
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("meter"))
}

pub async fn list(
    tx: &Tx,
    _scope: &Scope,
    include_archived: bool,
    page: PageRequest<'_>,
) -> ApiResult<Page<MeterRow>> {
    let mut q = meter::Entity::find();
    if !include_archived {
        q = q.filter(meter::Column::ArchivedAt.is_null());
    }
    if let Some(after) = page.after {
        q = q.filter(meter::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(meter::Column::Id)
        .limit(page.first + 1)
        .all(tx)
        .await?;
    Ok(into_page(rows, page.first))
}

pub async fn rename(
    tx: &Tx,
    row: &MeterRow,
    name: String,
    now: DateTime<Utc>,
) -> ApiResult<MeterRow> {
    let mut active: meter::ActiveModel = row.clone().into();
    active.name = Set(name);
    active.updated_at = Set(now);
    Ok(active.update(tx).await?)
}

pub async fn archive(tx: &Tx, row: &MeterRow, now: DateTime<Utc>) -> ApiResult<MeterRow> {
    let mut active: meter::ActiveModel = row.clone().into();
    active.archived_at = Set(Some(now));
    active.updated_at = Set(now);
    Ok(active.update(tx).await?)
}

/// The domain meter a row stands for.
pub fn definition(row: &MeterRow) -> ApiResult<dotmac_schema::usage::Meter> {
    fn parse<T: serde::de::DeserializeOwned>(s: &str) -> ApiResult<T> {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .map_err(|e| ApiError::internal(format!("stored meter field {s:?}: {e}")))
    }
    Ok(dotmac_schema::usage::Meter {
        slug: row.slug.clone(),
        event_type: row.event_type.clone(),
        aggregation: parse(&row.aggregation)?,
        value_path: row.value_path.clone(),
        group_by: serde_json::from_str(&row.group_by)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        window: parse(&row.window_size)?,
        allow_negative: row.allow_negative,
    })
}

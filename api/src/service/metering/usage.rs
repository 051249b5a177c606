//! Usage in the caller's scope: the committed rollups of one meter over a
//! time range, re-windowed to a coarser granularity and re-grouped to a
//! subset of the meter's properties, exactly (states merge by the merge law,
//! so a day's UNIQUE_COUNT is the union of its hours, not their sum).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use dotmac_schema::usage::{merge_into, RollupKey, RollupState, Window};
use dotmac_schema::{Scope, TenantId};
use rust_decimal::Decimal;
use sea_orm::{EntityTrait, QueryFilter, QuerySelect};

use super::Metering;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::store::entity::{meter, tenant};
use crate::store::{tenant_rows, tenant_rows_in};

/// Most points one query answers; a wider query is refused with a reason.
pub const MAX_POINTS: usize = 10_000;
/// Longest time range of one query.
pub const MAX_RANGE_DAYS: i64 = 400;

pub struct UsageQuery {
    pub meter: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub tenant_id: Option<String>,
    pub granularity: Option<Window>,
    pub group_by: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UsagePoint {
    pub tenant_id: String,
    pub window_start: DateTime<Utc>,
    pub group: Vec<(String, String)>,
    pub value: Decimal,
}

fn rank(w: Window) -> u8 {
    match w {
        Window::Minute => 0,
        Window::Hour => 1,
        Window::Day => 2,
    }
}

/// The tenants whose usage the caller may read: `None` means every tenant.
async fn tenants_in_scope(
    metering: &Metering,
    scope: &Scope,
    asked: Option<&str>,
) -> ApiResult<Option<Vec<String>>> {
    let tx = metering.store.begin(scope).await?;
    let visible = match asked {
        Some(id) => {
            let id: TenantId = crate::service::parse_id("tenantId", id)?;
            // NOT_FOUND outside the scope, as everywhere.
            tenant_rows::get(&tx, scope, &id).await?;
            Some(vec![id.to_string()])
        }
        None if matches!(scope, Scope::All) => None,
        None => Some(
            tenant::Entity::find()
                .select_only()
                .column(tenant::Column::Id)
                .filter(tenant_rows_in(scope))
                .into_tuple::<String>()
                .all(&tx)
                .await?,
        ),
    };
    tx.commit().await?;
    Ok(visible)
}

pub async fn query(
    metering: &Metering,
    ctx: &RequestCtx,
    q: UsageQuery,
) -> ApiResult<Vec<UsagePoint>> {
    let p = ctx.principal()?;
    for (field, t) in [("from", q.from), ("to", q.to)] {
        dotmac_schema::dates::check_time(t)
            .map_err(|e| ApiError::validation(field, e.to_string()))?;
    }
    if q.to <= q.from {
        return Err(ApiError::validation("to", "must be after from"));
    }
    if q.to - q.from > TimeDelta::days(MAX_RANGE_DAYS) {
        return Err(ApiError::validation(
            "to",
            format!("a range spans at most {MAX_RANGE_DAYS} days"),
        ));
    }
    let tx = metering.store.begin(&p.scope).await?;
    let row = meter::Entity::find()
        .filter(sea_orm::ColumnTrait::eq(
            &meter::Column::Slug,
            q.meter.as_str(),
        ))
        .one(&tx)
        .await?
        .ok_or(ApiError::not_found("meter"))?;
    tx.commit().await?;
    let definition = crate::store::meter_rows::definition(&row)?;
    let granularity = q.granularity.unwrap_or(definition.window);
    if rank(granularity) < rank(definition.window) {
        return Err(ApiError::validation(
            "granularity",
            "must not be finer than the meter's window",
        ));
    }
    let group_by = q.group_by.unwrap_or_else(|| definition.group_by.clone());
    if let Some(bad) = group_by.iter().find(|g| !definition.group_by.contains(g)) {
        return Err(ApiError::validation(
            "groupBy",
            format!(
                "{bad:?} is not a group-by property of meter {}",
                definition.slug
            ),
        ));
    }
    // Scope first: outside it the answer is NOT_FOUND whatever is configured.
    let tenants = tenants_in_scope(metering, &p.scope, q.tenant_id.as_deref()).await?;
    let from = definition.window.start(q.from).timestamp();
    let (meter, to) = (definition.slug.as_str(), q.to.timestamp());
    let rollups = metering
        .usage
        .rollups(tenants.as_deref(), meter, from, to)
        .await?;

    // Keys re-windowed and re-grouped; the meter is the same throughout.
    let mut merged: BTreeMap<RollupKey, RollupState> = BTreeMap::new();
    for (key, state) in rollups {
        let group: Vec<(String, String)> = key
            .group
            .into_iter()
            .filter(|(k, _)| group_by.contains(k))
            .collect();
        let point = RollupKey {
            window_start: granularity.start(key.window_start),
            group,
            ..key
        };
        merge_into(&mut merged, point, state).map_err(|e| ApiError::internal(e.to_string()))?;
        if merged.len() > MAX_POINTS {
            return Err(ApiError::validation(
                "to",
                format!(
                    "more than {MAX_POINTS} points; narrow the range, the tenant or the grouping"
                ),
            ));
        }
    }
    Ok(merged
        .into_iter()
        .map(|(key, state)| UsagePoint {
            tenant_id: key.tenant,
            window_start: key.window_start,
            group: key.group,
            value: state.value(),
        })
        .collect())
}

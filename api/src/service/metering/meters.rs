//! Meter use cases: platform admins define, rename and archive meters. The
//! definition is checked by `dotmac_schema::usage::Meter::validate`; what a
//! meter measures (type, aggregation, value, groups, window) never changes
//! after creation, because rollups already written depend on it.

use dotmac_schema::usage::{Aggregation, Meter, MeterError, Window};
use dotmac_schema::{MeterId, Role};

use super::Metering;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::{parse_id, reason, required_text};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::billing_rows;
use crate::store::meter_rows::{self, MeterRow};

pub struct NewMeter {
    pub slug: String,
    pub name: String,
    pub event_type: String,
    pub aggregation: Aggregation,
    pub value_path: Option<String>,
    pub group_by: Vec<String>,
    pub window: Window,
    /// Whether events may carry negative values (a correction feed).
    pub allow_negative: bool,
}

fn invalid(e: MeterError) -> ApiError {
    match e {
        MeterError::Invalid { field, reason } => {
            ApiError::validation(format!("input.{field}"), reason)
        }
        MeterError::Value { path, reason } => ApiError::validation(path, reason),
    }
}

/// The stored text of an enum (its serde name).
fn text<T: serde::Serialize>(v: &T) -> ApiResult<String> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => Ok(s),
        _ => Err(ApiError::internal("enum without a text form")),
    }
}

pub async fn create(metering: &Metering, ctx: &RequestCtx, input: NewMeter) -> ApiResult<MeterRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let name = required_text("input.name", &input.name, 200)?;
    let meter = Meter {
        slug: input.slug,
        event_type: input.event_type,
        aggregation: input.aggregation,
        value_path: input.value_path.filter(|v| !v.is_empty()),
        group_by: input.group_by,
        window: input.window,
        allow_negative: input.allow_negative,
    };
    meter.validate().map_err(invalid)?;
    let now = metering.clock.now();
    let row = MeterRow {
        id: MeterId::new().to_string(),
        slug: meter.slug.clone(),
        name,
        event_type: meter.event_type.clone(),
        aggregation: text(&meter.aggregation)?,
        value_path: meter.value_path.clone(),
        group_by: serde_json::to_string(&meter.group_by)
            .map_err(|e| ApiError::internal(e.to_string()))?,
        window_size: text(&meter.window)?,
        created_at: now,
        updated_at: now,
        archived_at: None,
        allow_negative: meter.allow_negative,
    };
    let tx = metering.store.begin(&p.scope).await?;
    let row = meter_rows::insert(&tx, row).await?;
    audit_log::record(
        &tx,
        metering.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "meter.create",
            object_id: Some(row.id.clone()),
            after: Some(format!(
                "{}:{}:{}",
                row.slug, row.aggregation, row.window_size
            )),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

pub async fn rename(
    metering: &Metering,
    ctx: &RequestCtx,
    id: &str,
    name: &str,
) -> ApiResult<MeterRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let id: MeterId = parse_id("id", id)?;
    let name = required_text("input.name", name, 200)?;
    let tx = metering.store.begin(&p.scope).await?;
    let before = meter_rows::get(&tx, &p.scope, &id).await?;
    let row = meter_rows::rename(&tx, &before, name, metering.clock.now()).await?;
    audit_log::record(
        &tx,
        metering.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "meter.rename",
            object_id: Some(row.id.clone()),
            before: Some(before.name.clone()),
            after: Some(row.name.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Archived meters stop counting new events; their rollups stay for billing.
pub async fn archive(
    metering: &Metering,
    ctx: &RequestCtx,
    id: &str,
    why: &str,
) -> ApiResult<MeterRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let id: MeterId = parse_id("id", id)?;
    let why = reason(Some(why), true)?;
    let tx = metering.store.begin(&p.scope).await?;
    let before = meter_rows::get(&tx, &p.scope, &id).await?;
    if before.archived_at.is_some() {
        return Err(ApiError::conflict("id", "the meter is already archived"));
    }
    // An archived meter counts no new events: a live subscription priced on
    // it would be billed zero for that usage from here on.
    let live = billing_rows::live_subscriptions(&tx).await?;
    for plan in billing_rows::all_plans(&tx).await? {
        let prices_it = billing_rows::plan_version(&plan)?
            .prices
            .iter()
            .any(|p| p.meter.as_deref() == Some(before.slug.as_str()));
        if prices_it && live.iter().any(|s| s.plan_id == plan.id) {
            return Err(ApiError::conflict(
                "id",
                format!(
                    "plan `{}` v{} prices this meter and has live subscriptions",
                    plan.slug, plan.version
                ),
            ));
        }
    }
    let row = meter_rows::archive(&tx, &before, metering.clock.now()).await?;
    audit_log::record(
        &tx,
        metering.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "meter.archive",
            object_id: Some(row.id.clone()),
            after: why,
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

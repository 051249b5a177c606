//! The plan catalogue: plan versions with their prices, never edited once
//! created (a price change is a new version).

use dotmac_schema::price::PlanVersion;
use dotmac_schema::{PlanId, Role};

use super::Billing;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::required_text;
use crate::store::audit_log::{self, AuditEntry};
use crate::store::billing_rows::{self as rows, PlanRow};
use crate::store::meter_rows;

/// Adds a plan version to the catalogue (platform admins).
pub async fn create_plan(
    billing: &Billing,
    ctx: &RequestCtx,
    name: &str,
    plan: PlanVersion,
) -> ApiResult<PlanRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let name = required_text("input.name", name, 200)?;
    plan.validate()
        .map_err(|e| ApiError::validation(format!("input.{}", e.field), e.reason))?;
    let row = rows::plan_row(PlanId::new().to_string(), name, &plan, billing.clock.now())?;
    let tx = billing.store.begin(&p.scope).await?;
    // A misspelt meter would bill its usage as zero, without a word.
    let slugs: Vec<&str> = plan
        .prices
        .iter()
        .filter_map(|p| p.meter.as_deref())
        .collect();
    if let Some(unknown) = meter_rows::unknown_slugs(&tx, &slugs).await?.first() {
        let i = plan
            .prices
            .iter()
            .position(|p| p.meter.as_deref() == Some(*unknown))
            .unwrap_or_default();
        return Err(ApiError::validation(
            format!("input.prices[{i}].meter"),
            format!("no meter `{unknown}` (or it is archived)"),
        ));
    }
    let row = rows::insert_plan(&tx, row).await?;
    audit_log::record(
        &tx,
        billing.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "plan.create",
            object_id: Some(row.id.clone()),
            after: Some(format!("{}:v{}:{}", row.slug, row.version, row.currency)),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

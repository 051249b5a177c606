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

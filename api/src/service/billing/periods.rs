//! Billing periods and the usage counted in them: which period of a
//! subscription's calendar starts in a month, and each tenant's committed
//! usage over a period, whichever store holds it.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;

use super::Billing;
use crate::error::{ApiError, ApiResult};
use crate::pipeline::PeriodUsage;

/// The first day of a `YYYY-MM` month (years 1970 to 9999), or a
/// VALIDATION error on `field`.
pub fn parse_month(field: &str, text: &str) -> ApiResult<NaiveDate> {
    dotmac_schema::dates::parse_month(text).map_err(|e| ApiError::validation(field, e.to_string()))
}

/// Every tenant's total of each of `meters` over `[from, to)` (rollup
/// windows that start in it), merged by each meter's merge law; keyed by
/// (tenant, meter), absent where a tenant has no usage. Quantities are
/// normalized (no trailing zeros) whichever store answered, so an invoice
/// line reads the same from ClickHouse's sums as from merged parts. A
/// (tenant, meter) whose parts cannot be totalled is in `failed`.
pub async fn usage_totals(
    billing: &Billing,
    meters: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<PeriodUsage> {
    billing
        .usage
        .meter_totals(meters, from.timestamp(), to.timestamp())
        .await
}

/// Each tenant's total of `meter` over `[from, to)` (rollup windows that
/// start in it), merged by the meter's own merge law. Over every tenant, one
/// whose parts cannot be totalled is left out (and logged); for named
/// tenants it is an error naming the tenant and why.
pub async fn usage_by_tenant(
    billing: &Billing,
    tenants: Option<&[String]>,
    meter: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, Decimal>> {
    match tenants {
        None => {
            let read = usage_totals(billing, &[meter.to_owned()], from, to).await?;
            for ((tenant, meter), why) in &read.failed {
                tracing::warn!(%tenant, %meter, %why, "usage left out: its parts cannot be totalled");
            }
            Ok(read
                .totals
                .into_iter()
                .map(|((tenant, _), q)| (tenant, q))
                .collect())
        }
        Some(_) => {
            let rollups = billing
                .usage
                .rollups(tenants, meter, from.timestamp(), to.timestamp())
                .await?;
            crate::pipeline::totals_by_tenant(rollups)
        }
    }
}

//! Billing periods and the usage counted in them: which period of a
//! subscription's calendar starts in a month, and each tenant's committed
//! usage over a period, whichever store holds it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use dotmac_billing::period::Calendar;
use dotmac_billing::Period;
use rust_decimal::Decimal;

use super::Billing;
use crate::error::ApiResult;

/// The first day of a `YYYY-MM` month.
pub fn parse_month(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d").ok()
}

/// The period of `calendar` that starts in `month`'s month, if one does.
pub fn period_starting_in(calendar: &Calendar, month: NaiveDate) -> Option<Period> {
    use chrono::Datelike;
    let first = month.with_day(1)?;
    let mut n = calendar.index_of(first);
    if calendar.boundary(n) < first {
        n += 1;
    }
    let p = calendar.period(n);
    (p.start.year() == first.year() && p.start.month() == first.month()).then_some(p)
}

/// Every tenant's total of each of `meters` over `[from, to)` (rollup
/// windows that start in it), merged by each meter's merge law; keyed by
/// (tenant, meter), absent where a tenant has no usage. Quantities are
/// normalized (no trailing zeros) whichever store answered, so an invoice
/// line reads the same from ClickHouse's sums as from merged parts.
pub async fn usage_totals(
    billing: &Billing,
    meters: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<HashMap<(String, String), Decimal>> {
    billing
        .usage
        .meter_totals(meters, from.timestamp(), to.timestamp())
        .await
}

/// Each tenant's total of `meter` over `[from, to)` (rollup windows that
/// start in it), merged by the meter's own merge law.
pub async fn usage_by_tenant(
    billing: &Billing,
    tenants: Option<&[String]>,
    meter: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, Decimal>> {
    match tenants {
        None => Ok(usage_totals(billing, &[meter.to_owned()], from, to)
            .await?
            .into_iter()
            .map(|((tenant, _), q)| (tenant, q))
            .collect()),
        Some(_) => {
            let rollups = billing
                .usage
                .rollups(tenants, meter, from.timestamp(), to.timestamp())
                .await?;
            crate::pipeline::totals_by_tenant(rollups)
        }
    }
}

//! Conversions between billing rows and the billing crate's types: a plan
//! row and its `PlanVersion`, a subscription's JSON terms and anchor, an
//! invoice's lines and period, and a rated `Invoice` onto a draft row.

use chrono::{DateTime, NaiveDate, Utc};
use dotmac_billing::{Invoice, InvoiceLine, Period};
use dotmac_schema::money::Currency;
use dotmac_schema::price::{Interval, PlanVersion, Price};

use super::{corrupt, InvoiceRow, PlanRow, SubscriptionRow};
use crate::error::ApiResult;

/// The billing definition of a plan row.
pub fn plan_version(row: &PlanRow) -> ApiResult<PlanVersion> {
    let interval: Interval =
        serde_json::from_value(serde_json::Value::String(row.billing_interval.clone()))
            .map_err(|e| corrupt("plan interval", e))?;
    let prices: Vec<Price> =
        serde_json::from_str(&row.prices).map_err(|e| corrupt("plan prices", e))?;
    Ok(PlanVersion {
        plan: row.slug.clone(),
        version: u32::try_from(row.version).map_err(|e| corrupt("plan version", e))?,
        currency: Currency::from_code(&row.currency).map_err(|e| corrupt("plan currency", e))?,
        interval,
        trial_days: u32::try_from(row.trial_days).map_err(|e| corrupt("trial days", e))?,
        prices,
    })
}

/// A plan row for a checked definition.
pub fn plan_row(
    id: String,
    name: String,
    plan: &PlanVersion,
    now: DateTime<Utc>,
) -> ApiResult<PlanRow> {
    let interval = serde_json::to_value(plan.interval).map_err(|e| corrupt("interval", e))?;
    Ok(PlanRow {
        id,
        slug: plan.plan.clone(),
        version: i32::try_from(plan.version).map_err(|e| corrupt("version", e))?,
        name,
        currency: plan.currency.code().to_owned(),
        billing_interval: interval.as_str().unwrap_or_default().to_owned(),
        trial_days: i32::try_from(plan.trial_days).map_err(|e| corrupt("trial days", e))?,
        prices: serde_json::to_string(&plan.prices).map_err(|e| corrupt("prices", e))?,
        created_at: now,
    })
}

/// A subscription's JSON terms (tax, coupon), if set.
pub fn terms<T: serde::de::DeserializeOwned>(
    json: &Option<String>,
    what: &str,
) -> ApiResult<Option<T>> {
    json.as_deref()
        .map(|j| serde_json::from_str(j).map_err(|e| corrupt(what, e)))
        .transpose()
}

pub fn anchor(row: &SubscriptionRow) -> ApiResult<NaiveDate> {
    row.anchor_date
        .parse()
        .map_err(|e| corrupt("subscription anchor", e))
}

pub fn lines(row: &InvoiceRow) -> ApiResult<Vec<InvoiceLine>> {
    serde_json::from_str(&row.lines).map_err(|e| corrupt("invoice lines", e))
}

pub fn period_of(row: &InvoiceRow) -> ApiResult<Period> {
    Ok(Period {
        start: row
            .period_start
            .parse()
            .map_err(|e| corrupt("invoice period", e))?,
        end: row
            .period_end
            .parse()
            .map_err(|e| corrupt("invoice period", e))?,
    })
}

/// Sets a draft row's amounts and lines from `invoice`.
pub fn set_amounts(row: &mut InvoiceRow, invoice: &Invoice) -> ApiResult<()> {
    let c = invoice.currency;
    row.currency = c.code().to_owned();
    row.subtotal = c.format(invoice.subtotal);
    row.discount = c.format(invoice.discount);
    row.tax = c.format(invoice.tax);
    row.total = c.format(invoice.total);
    row.amount_due = c.format(invoice.amount_due);
    // Nothing settled yet on a draft: zero, shown with the places.
    for settled in [
        &mut row.paid,
        &mut row.credited,
        &mut row.credit_applied,
        &mut row.credit_issued,
    ] {
        if settled.is_empty() {
            *settled = c.format(rust_decimal::Decimal::ZERO);
        }
    }
    row.lines = serde_json::to_string(&invoice.lines).map_err(|e| corrupt("lines", e))?;
    Ok(())
}

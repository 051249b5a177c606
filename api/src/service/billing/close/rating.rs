//! Rating one due subscription: its recurring and usage lines, the
//! adjustments for the previous period's late usage, its coupon and tax, and
//! what to write (a new draft, an updated one, or one to finalize as it is).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use dotmac_billing::{
    adjustment_lines, billed_quantities, build_invoice, recurring_lines, usage_lines, RatingError,
    UsageTotals,
};
use dotmac_schema::money::Rounding;
use dotmac_schema::{InvoiceId, InvoiceStatus};
use rust_decimal::Decimal;

use super::book::Due;
use super::read_model::{Known, Usage};
use super::{CloseReport, CloseRequest};
use crate::error::{ApiError, ApiResult};
use crate::service::billing::Billing;
use crate::store::billing_rows::{self as rows, InvoiceRow, PLATFORM_ISSUER};

/// What a close writes for one subscription.
pub(super) enum Write {
    /// A new draft.
    Insert(InvoiceRow),
    /// A draft whose amounts changed.
    Update(InvoiceRow),
    /// A draft that stays as it is (listed only when due to finalize).
    Keep(String),
}

pub(super) struct Pending {
    pub(super) write: Write,
    /// Past its grace: finalized in the same transaction.
    pub(super) ripe: bool,
}

/// Rates one due subscription into what to write, if anything.
pub(super) async fn rate(
    billing: &Billing,
    req: &CloseRequest,
    d: &Due,
    usage: &Usage,
    known: &Known,
    report: &mut CloseReport,
) -> ApiResult<Option<Pending>> {
    if d.accrues_to < d.period.end_time() {
        report.cancelled_in_period += 1;
    }
    let key = (d.sub.id.clone(), d.period.start.to_string());
    // Past draft: nothing of it changes (late usage goes to the next).
    if known.done.contains(&key) {
        report.unchanged += 1;
        return Ok(None);
    }
    let existing = known.drafts.get(&key);
    // A trial ended or the subscription was cancelled inside the
    // period: only usage while it ran counts.
    let counted = usage
        .while_running(billing, d, d.period, d.accrues_from, d.accrues_to)
        .await?;
    let mut lines = Vec::new();
    for (plan, from, to) in &d.segments {
        lines.extend(
            recurring_lines(plan, &d.period, *from, *to, Rounding::default()).map_err(unrated)?,
        );
    }
    lines.extend(usage_lines(&d.plan, &counted).map_err(unrated)?);
    let history = known
        .settled
        .get(&d.sub.id)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if history
        .iter()
        .any(|r| rows::period_of(r).is_ok_and(|p| p == d.previous))
    {
        // Compared with what the previous invoice counted: from the
        // trial's end when it ended inside that period.
        let from = d
            .sub
            .trial_ends_at
            .map_or(d.previous.start_time(), |t| t.max(d.previous.start_time()));
        let counted = usage
            .while_running(billing, d, d.previous, from, d.previous.end_time())
            .await?;
        let adjusted = adjustments(d, history, &counted)?;
        lines.extend(adjusted.lines);
        report
            .credit_due
            .extend(adjusted.decreases.into_iter().map(|fall| super::CreditDue {
                tenant_id: d.sub.tenant_id.clone(),
                subscription_id: d.sub.id.clone(),
                fall,
            }));
    }
    // The subscription's own rate, else its tenant's jurisdiction's in
    // force on the period's last day.
    let last_day = d.period.end.pred_opt().unwrap_or(d.period.end);
    let tax = d
        .tax
        .clone()
        .or_else(|| known.jurisdictions.rate(&d.sub.tenant_id, last_day));
    let invoice = build_invoice(
        lines,
        d.plan.currency,
        Rounding::default(),
        coupon_for(d, known.discounted.get(&d.sub.id)),
        tax.as_ref(),
        Decimal::ZERO,
    );
    let ripe = req.now >= d.period.end_time() + req.grace;
    let write = match existing {
        None => Write::Insert(new_draft(d, &invoice, req.now)?),
        Some(row) => {
            let mut changed = row.clone();
            rows::set_amounts(&mut changed, &invoice)?;
            if changed != *row {
                Write::Update(changed)
            } else if ripe {
                Write::Keep(row.id.clone())
            } else {
                report.unchanged += 1;
                return Ok(None);
            }
        }
    };
    Ok(Some(Pending { write, ripe }))
}

/// The coupon, while it has periods left: those already served are the
/// other periods whose settled invoices carry a discount.
pub(super) fn coupon_for<'a>(
    d: &'a Due,
    discounted: Option<&BTreeSet<String>>,
) -> Option<&'a dotmac_billing::Coupon> {
    let c = d.coupon.as_ref()?;
    let this = d.period.start.to_string();
    let used = discounted
        .into_iter()
        .flatten()
        .filter(|start| **start != this)
        .count();
    c.applies_after(u32::try_from(used).unwrap_or(u32::MAX))
        .then_some(c)
}

/// A new draft row for `d`'s period.
pub(super) fn new_draft(
    d: &Due,
    invoice: &dotmac_billing::Invoice,
    now: DateTime<Utc>,
) -> ApiResult<InvoiceRow> {
    let mut row = InvoiceRow {
        id: InvoiceId::new().to_string(),
        tenant_id: d.sub.tenant_id.clone(),
        subscription_id: d.sub.id.clone(),
        period_start: d.period.start.to_string(),
        period_end: d.period.end.to_string(),
        status: InvoiceStatus::Draft,
        currency: String::new(),
        issuer: PLATFORM_ISSUER.into(),
        number: None,
        subtotal: String::new(),
        discount: String::new(),
        tax: String::new(),
        total: String::new(),
        amount_due: String::new(),
        lines: String::new(),
        finalized_at: None,
        due_at: None,
        created_at: now,
        updated_at: now,
        // Zero with the currency's places, set with the amounts below.
        paid: String::new(),
        credited: String::new(),
        credit_applied: String::new(),
        credit_issued: String::new(),
        status_reason: None,
    };
    rows::set_amounts(&mut row, invoice)?;
    Ok(row)
}

/// Adjustment lines for the previous period's finalized invoice when its
/// usage (`counted`, over the window that invoice counted) changed since
/// (usage of older periods is not re-read: the dedupe horizon and the
/// aggregator's time limits keep late events within about a month).
pub(super) fn adjustments(
    d: &Due,
    history: &[InvoiceRow],
    counted: &UsageTotals,
) -> ApiResult<dotmac_billing::Adjustments> {
    let mut all_lines = Vec::new();
    for row in history {
        all_lines.extend(rows::lines(row)?);
    }
    let billed = billed_quantities(all_lines.iter().map(|l| &l.kind), &d.previous);
    adjustment_lines(&d.plan, &d.previous, &billed, counted).map_err(unrated)
}

/// A charge beyond what a line may hold: this subscription's failure.
fn unrated(e: RatingError) -> ApiError {
    ApiError::internal(e.to_string())
}

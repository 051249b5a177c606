//! Billing's GraphQL views: plans and their prices, subscriptions,
//! invoices with their lines and tier breakdowns, credit notes, payments,
//! tax rates, close reports and reconciliations. Money is exact decimal
//! text in the invoice's currency (never a float).

use async_graphql::{Context, Enum, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use dotmac_billing::{InvoiceLine, LineKind};
use dotmac_schema::price::{ChargeModel, Interval, Price, Tier};
use dotmac_schema::{InvoiceStatus, PaymentMethod, Scope, SubscriptionState};
use rust_decimal::Decimal;

use crate::error::ApiError;
use crate::graphql::ctx;
use crate::store::billing_rows::{self as rows, InvoiceRow, PlanRow, SubscriptionRow};
use crate::store::tax_rate_rows::TaxRateRow;

/// One version of a plan.
pub struct Plan(pub PlanRow);

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ChargeModelKind {
    Flat,
    PerUnit,
    Graduated,
    Volume,
    Package,
    Percentage,
}

#[derive(SimpleObject)]
pub struct PriceTier {
    /// Units up to and including this bound; null on the last tier.
    pub up_to: Option<String>,
    pub unit_price: String,
    pub flat_fee: String,
}

/// One price of a plan.
#[derive(SimpleObject)]
pub struct PlanPrice {
    /// The meter rated (null for a flat recurring fee).
    pub meter: Option<String>,
    pub model: ChargeModelKind,
    /// FLAT: the amount per period.
    pub amount: Option<String>,
    /// PER_UNIT: the price of each unit.
    pub unit_price: Option<String>,
    /// GRADUATED and VOLUME.
    pub tiers: Vec<PriceTier>,
    /// PACKAGE: units per package and its price.
    pub package_size: Option<String>,
    pub package_price: Option<String>,
    /// PERCENTAGE: percent of the metered value.
    pub percent: Option<String>,
    pub included_units: String,
    /// Least charged per period.
    pub minimum: Option<String>,
}

fn text(d: Decimal) -> String {
    d.to_string()
}

fn tier_view(t: &Tier) -> PriceTier {
    PriceTier {
        up_to: t.up_to.map(text),
        unit_price: text(t.unit_price),
        flat_fee: text(t.flat_fee),
    }
}

fn price_view(p: &Price) -> PlanPrice {
    let mut v = PlanPrice {
        meter: p.meter.clone(),
        model: ChargeModelKind::Flat,
        amount: None,
        unit_price: None,
        tiers: Vec::new(),
        package_size: None,
        package_price: None,
        percent: None,
        included_units: text(p.included_units),
        minimum: p.minimum.map(text),
    };
    match &p.model {
        ChargeModel::Flat { amount } => v.amount = Some(text(*amount)),
        ChargeModel::PerUnit { unit_price } => {
            v.model = ChargeModelKind::PerUnit;
            v.unit_price = Some(text(*unit_price));
        }
        ChargeModel::Graduated { tiers } => {
            v.model = ChargeModelKind::Graduated;
            v.tiers = tiers.iter().map(tier_view).collect();
        }
        ChargeModel::Volume { tiers } => {
            v.model = ChargeModelKind::Volume;
            v.tiers = tiers.iter().map(tier_view).collect();
        }
        ChargeModel::Package {
            size,
            package_price,
        } => {
            v.model = ChargeModelKind::Package;
            v.package_size = Some(text(*size));
            v.package_price = Some(text(*package_price));
        }
        ChargeModel::Percentage { percent } => {
            v.model = ChargeModelKind::Percentage;
            v.percent = Some(text(*percent));
        }
    }
    v
}

#[Object]
impl Plan {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// ISO-4217 code.
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn interval(&self) -> async_graphql::Result<Interval> {
        Ok(rows::plan_version(&self.0)?.interval)
    }
    async fn trial_days(&self) -> i32 {
        self.0.trial_days
    }
    async fn prices(&self) -> async_graphql::Result<Vec<PlanPrice>> {
        Ok(rows::plan_version(&self.0)?
            .prices
            .iter()
            .map(price_view)
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A tenant's subscription to a plan version.
pub struct Subscription(pub SubscriptionRow);

#[Object]
impl Subscription {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn tenant_id(&self) -> ID {
        ID(self.0.tenant_id.clone())
    }
    async fn plan(&self, gctx: &Context<'_>) -> async_graphql::Result<Plan> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let tx = app.store.begin(&p.scope).await?;
        let row = rows::get_plan_in(&tx, &p.scope, &self.0.plan_id).await?;
        tx.commit().await?;
        Ok(Plan(row))
    }
    async fn state(&self) -> SubscriptionState {
        self.0.state
    }
    /// Billing periods start on this day of the month (clamped to the month's end).
    async fn anchor_date(&self) -> &str {
        &self.0.anchor_date
    }
    async fn trial_ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.trial_ends_at
    }
    /// Set when it ends at its current period's end.
    async fn cancel_at_period_end(&self) -> bool {
        self.0.cancel_at_period_end
    }
    /// When a cancellation at period end takes effect: the end of the
    /// period in which it was asked.
    async fn cancels_at(&self) -> Option<DateTime<Utc>> {
        self.0.cancels_at
    }
    async fn cancelled_at(&self) -> Option<DateTime<Utc>> {
        self.0.cancelled_at
    }
    /// The tax rate applied per line, e.g. "KE VAT 16%".
    async fn tax_name(&self) -> async_graphql::Result<Option<String>> {
        let t: Option<dotmac_billing::TaxRate> = rows::terms(&self.0.tax, "tax")?;
        Ok(t.map(|t| t.name))
    }
    /// The coupon code, if any.
    async fn coupon_code(&self) -> async_graphql::Result<Option<String>> {
        let c: Option<dotmac_billing::Coupon> = rows::terms(&self.0.coupon, "coupon")?;
        Ok(c.map(|c| c.code))
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// The units of one tier on a usage line.
#[derive(SimpleObject)]
pub struct TierBreakdown {
    /// Index of the tier in the price (0-based).
    pub tier: i32,
    /// Units above this bound fall in the tier.
    pub from: String,
    pub up_to: Option<String>,
    pub quantity: String,
    pub unit_price: String,
    pub flat_fee: String,
    pub amount: String,
}

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceLineKind {
    Recurring,
    Usage,
    Proration,
    Adjustment,
}

/// One line of an invoice.
#[derive(SimpleObject)]
pub struct InvoiceLineView {
    pub description: String,
    pub kind: InvoiceLineKind,
    /// USAGE and ADJUSTMENT lines: the meter rated.
    pub meter: Option<String>,
    /// Units measured (for an adjustment: the period's corrected total).
    pub quantity: Option<String>,
    /// Of which free (included units).
    pub included: Option<String>,
    /// The price per unit when one price applied to every charged unit.
    pub unit_price: Option<String>,
    pub tiers: Vec<TierBreakdown>,
    /// ADJUSTMENT lines: the period whose late usage this is.
    pub original_period_start: Option<String>,
    pub original_period_end: Option<String>,
    pub amount: String,
    pub discount: String,
    pub tax: String,
    /// The rate the tax was computed at (e.g. "KE VAT 16%"); null untaxed.
    pub tax_rate: Option<String>,
    pub total: String,
}

fn line_view(line: InvoiceLine) -> InvoiceLineView {
    let (kind, meter, rating, original) = match line.kind {
        LineKind::Recurring => (InvoiceLineKind::Recurring, None, None, None),
        LineKind::Proration => (InvoiceLineKind::Proration, None, None, None),
        LineKind::Usage { meter, rating } => {
            (InvoiceLineKind::Usage, Some(meter), Some(rating), None)
        }
        LineKind::Adjustment {
            meter,
            original_period,
            rating,
        } => (
            InvoiceLineKind::Adjustment,
            Some(meter),
            Some(rating),
            Some(original_period),
        ),
    };
    let unit_price = rating.as_ref().and_then(|r| match r.tiers.as_slice() {
        [only] if only.flat_fee.is_zero() => Some(text(only.unit_price)),
        _ => None,
    });
    InvoiceLineView {
        description: line.description,
        kind,
        meter,
        quantity: rating.as_ref().map(|r| text(r.quantity)),
        included: rating.as_ref().map(|r| text(r.included)),
        unit_price,
        tiers: rating
            .map(|r| {
                r.tiers
                    .into_iter()
                    .map(|t| TierBreakdown {
                        tier: i32::try_from(t.tier).unwrap_or(i32::MAX),
                        from: text(t.from),
                        up_to: t.up_to.map(text),
                        quantity: text(t.quantity),
                        unit_price: text(t.unit_price),
                        flat_fee: text(t.flat_fee),
                        amount: text(t.amount),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        original_period_start: original.map(|(s, _)| s.to_string()),
        original_period_end: original.map(|(_, e)| e.to_string()),
        amount: text(line.amount),
        discount: text(line.discount),
        tax: text(line.tax),
        tax_rate: line.tax_rate,
        total: text(line.total),
    }
}

/// An invoice: a draft during its grace period, then finalized (immutable,
/// numbered).
pub struct Invoice(pub InvoiceRow);

#[Object]
impl Invoice {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn tenant_id(&self) -> ID {
        ID(self.0.tenant_id.clone())
    }
    async fn subscription_id(&self) -> ID {
        ID(self.0.subscription_id.clone())
    }
    /// First day of the period (00:00 UTC).
    async fn period_start(&self) -> &str {
        &self.0.period_start
    }
    /// The day after the period's last (00:00 UTC).
    async fn period_end(&self) -> &str {
        &self.0.period_end
    }
    async fn status(&self) -> InvoiceStatus {
        self.0.status
    }
    /// Gapless per issuer; set at finalization.
    async fn number(&self) -> Option<&str> {
        self.0.number.as_deref()
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn subtotal(&self) -> &str {
        &self.0.subtotal
    }
    async fn discount(&self) -> &str {
        &self.0.discount
    }
    async fn tax(&self) -> &str {
        &self.0.tax
    }
    async fn total(&self) -> &str {
        &self.0.total
    }
    async fn amount_due(&self) -> &str {
        &self.0.amount_due
    }
    async fn finalized_at(&self) -> Option<DateTime<Utc>> {
        self.0.finalized_at
    }
    async fn due_at(&self) -> Option<DateTime<Utc>> {
        self.0.due_at
    }
    /// Paid so far.
    async fn paid(&self) -> &str {
        &self.0.paid
    }
    /// Credited by credit notes so far.
    async fn credited(&self) -> &str {
        &self.0.credited
    }
    /// Prepaid credit used at finalization.
    async fn credit_applied(&self) -> &str {
        &self.0.credit_applied
    }
    /// What a negative total gave the tenant as credit at finalization,
    /// used by its next invoices.
    async fn credit_issued(&self) -> &str {
        &self.0.credit_issued
    }
    /// Why it was voided or written off.
    async fn status_reason(&self) -> Option<&str> {
        self.0.status_reason.as_deref()
    }
    async fn credit_notes(&self, gctx: &Context<'_>) -> async_graphql::Result<Vec<CreditNote>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let tx = app.store.begin(&p.scope).await?;
        // The invoice is in scope (it was read in it); so are its notes.
        let notes = rows::credit_notes_of(&tx, &self.0.id).await?;
        tx.commit().await?;
        Ok(notes.into_iter().map(CreditNote).collect())
    }
    async fn payments(&self, gctx: &Context<'_>) -> async_graphql::Result<Vec<Payment>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let tx = app.store.begin(&p.scope).await?;
        let payments = rows::payments_of(&tx, &self.0.id).await?;
        tx.commit().await?;
        Ok(payments.into_iter().map(Payment).collect())
    }
    /// The lines with their breakdown. Resellers see their tenants'
    /// invoice summaries, not the lines (FORBIDDEN).
    async fn lines(&self, gctx: &Context<'_>) -> async_graphql::Result<Vec<InvoiceLineView>> {
        lines_visible(ctx(gctx).1)?;
        Ok(rows::lines(&self.0)?.into_iter().map(line_view).collect())
    }
}

/// Invoice and credit-note lines are the tenant's: resellers see summaries
/// only (FORBIDDEN).
fn lines_visible(rc: &crate::caller::RequestCtx) -> crate::error::ApiResult<()> {
    if matches!(rc.principal()?.scope, Scope::Reseller(_)) {
        return Err(ApiError::Forbidden(
            "resellers see invoice summaries; the lines are the tenant's".into(),
        ));
    }
    Ok(())
}

/// Pushed when an invoice in the subscriber's scope is finalized.
#[derive(SimpleObject)]
pub struct InvoiceFinalized {
    pub invoice_id: ID,
    pub tenant_id: ID,
    pub number: String,
    pub total: String,
    pub currency: String,
    pub finalized_at: DateTime<Utc>,
}

/// What one period close did.
#[derive(SimpleObject)]
pub struct CloseReport {
    /// Subscriptions with a period starting in the month.
    pub subscriptions: i32,
    pub drafted: i32,
    pub updated: i32,
    pub unchanged: i32,
    pub finalized: i32,
    /// Still in their trial for the whole period.
    pub in_trial: i32,
    /// Cancelled inside the period (billed up to then).
    pub cancelled_in_period: i32,
    /// Subscriptions this close could not bill, each with its tenant and
    /// why; every other subscription was billed. The next close retries.
    pub failed: Vec<CloseFailure>,
    /// Usage of finalized periods that fell after billing: never refunded
    /// by the close; a platform admin may issue a credit note for it.
    pub credit_due: Vec<CreditDue>,
}

/// Usage of a finalized period that fell after it was billed.
#[derive(SimpleObject)]
pub struct CreditDue {
    pub tenant_id: ID,
    pub subscription_id: ID,
    pub meter: String,
    /// The finalized period, `YYYY-MM-DD` (first day).
    pub period_start: String,
    /// The quantity billed, and the quantity counted now.
    pub billed: String,
    pub counted: String,
    /// What rating the lower quantity would have saved, in the plan's
    /// currency.
    pub credit: String,
}

/// A subscription a close could not bill.
#[derive(SimpleObject)]
pub struct CloseFailure {
    pub tenant_id: ID,
    pub subscription_id: ID,
    pub cause: String,
}

impl From<crate::service::billing::close::CloseReport> for CloseReport {
    fn from(r: crate::service::billing::close::CloseReport) -> Self {
        let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
        CloseReport {
            subscriptions: n(r.subscriptions),
            drafted: n(r.drafted),
            updated: n(r.updated),
            unchanged: n(r.unchanged),
            finalized: n(r.finalized),
            in_trial: n(r.in_trial),
            cancelled_in_period: n(r.cancelled_in_period),
            failed: r
                .failed
                .into_iter()
                .map(|f| CloseFailure {
                    tenant_id: ID(f.tenant_id),
                    subscription_id: ID(f.subscription_id),
                    cause: f.cause,
                })
                .collect(),
            credit_due: r
                .credit_due
                .into_iter()
                .map(|c| CreditDue {
                    tenant_id: ID(c.tenant_id),
                    subscription_id: ID(c.subscription_id),
                    meter: c.fall.meter,
                    period_start: c.fall.original.start.to_string(),
                    billed: c.fall.was.to_string(),
                    counted: c.fall.now.to_string(),
                    credit: c.fall.credit.to_string(),
                })
                .collect(),
        }
    }
}

/// A credit note against a finalized invoice.
pub struct CreditNote(pub rows::CreditNoteRow);

#[derive(SimpleObject)]
pub struct CreditedLineView {
    /// Index of the invoice line (0-based).
    pub line: i32,
    pub net: String,
    pub tax: String,
}

#[Object]
impl CreditNote {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn invoice_id(&self) -> ID {
        ID(self.0.invoice_id.clone())
    }
    /// Gapless, like invoice numbers.
    async fn number(&self) -> &str {
        &self.0.number
    }
    async fn reason(&self) -> &str {
        &self.0.reason
    }
    async fn total(&self) -> &str {
        &self.0.total
    }
    /// The part that went to the tenant's credit (the invoice was paid).
    async fn to_credit_balance(&self) -> &str {
        &self.0.to_credit_balance
    }
    /// The credited lines. Resellers see the note's totals, not its lines
    /// (FORBIDDEN), as for invoices.
    async fn lines(&self, gctx: &Context<'_>) -> async_graphql::Result<Vec<CreditedLineView>> {
        lines_visible(ctx(gctx).1)?;
        let lines: Vec<crate::service::billing::settlement::CreditedLine> =
            serde_json::from_str(&self.0.lines).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(lines
            .into_iter()
            .map(|l| CreditedLineView {
                line: i32::try_from(l.line).unwrap_or(i32::MAX),
                net: l.net.to_string(),
                tax: l.tax.to_string(),
            })
            .collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A payment against an invoice.
pub struct Payment(pub rows::PaymentRow);

#[Object]
impl Payment {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn invoice_id(&self) -> ID {
        ID(self.0.invoice_id.clone())
    }
    async fn amount(&self) -> &str {
        &self.0.amount
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn method(&self) -> PaymentMethod {
        self.0.method
    }
    async fn reference(&self) -> &str {
        &self.0.reference
    }
    /// Applied to the invoice.
    async fn to_invoice(&self) -> &str {
        &self.0.to_invoice
    }
    /// Beyond the invoice's balance: the tenant's credit.
    async fn to_credit_balance(&self) -> &str {
        &self.0.to_credit_balance
    }
    async fn received_at(&self) -> DateTime<Utc> {
        self.0.received_at
    }
}

/// One tenant and meter of a reconciled month.
#[derive(SimpleObject)]
pub struct ReconciliationRow {
    pub tenant_id: ID,
    pub meter: String,
    pub period_start: String,
    pub period_end: String,
    /// What invoices charged for the period (null: no invoice yet).
    pub invoiced: Option<String>,
    pub invoice_status: Option<InvoiceStatus>,
    /// Committed rollups.
    pub rollups: String,
    /// The raw deduplicated events refolded by the meter.
    pub raw: String,
    /// Why the figures differ; empty when they agree.
    pub causes: Vec<String>,
}

/// A month's reconciliation in the caller's scope.
#[derive(SimpleObject)]
pub struct Reconciliation {
    pub month: String,
    /// Rows with a cause; zero on a clean month.
    pub discrepancies: i32,
    pub rows: Vec<ReconciliationRow>,
}

impl Reconciliation {
    pub fn new(month: String, r: crate::service::billing::reconcile::ReconReport) -> Self {
        Reconciliation {
            month,
            discrepancies: i32::try_from(r.discrepancies()).unwrap_or(i32::MAX),
            rows: r
                .rows
                .into_iter()
                .map(|row| ReconciliationRow {
                    tenant_id: ID(row.tenant_id),
                    meter: row.meter,
                    period_start: row.period.start.to_string(),
                    period_end: row.period.end.to_string(),
                    invoiced: row.invoiced.map(text),
                    invoice_status: row.invoice_status,
                    rollups: text(row.rollups),
                    raw: text(row.raw),
                    causes: row.causes,
                })
                .collect(),
        }
    }
}

/// A jurisdiction's tax rate from a date on. Invoices of a tenant in that
/// jurisdiction carry the rate in force on their period's last day, unless
/// the subscription has a rate of its own.
pub struct TaxRate(pub TaxRateRow);

#[Object]
impl TaxRate {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    /// ISO 3166 code: a country (KE) or a subdivision (US-CA).
    async fn jurisdiction(&self) -> &str {
        &self.0.jurisdiction
    }
    /// What invoices print, e.g. "KE VAT 16%".
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Decimal text, e.g. "16".
    async fn percent(&self) -> &str {
        &self.0.percent
    }
    /// Whether prices already include the tax.
    async fn inclusive(&self) -> bool {
        self.0.inclusive
    }
    /// YYYY-MM-DD.
    async fn effective_from(&self) -> &str {
        &self.0.effective_from
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

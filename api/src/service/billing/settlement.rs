//! After finalization: credit notes (full or per line, with a reason,
//! reversing exactly the tax each line carried), payments (manual, or from
//! the signed webhook; partial; an overpayment becomes credit), void and
//! uncollectible, and dunning (past_due after the due date, the tenant
//! suspended after a configurable number of days, reactivated when paid).
//! Every change locks the invoice row, so concurrent notes or payments
//! cannot over-credit it; amounts due never go negative.

use chrono::{DateTime, Utc};
use dotmac_billing::settlement::{credit_line, CreditLine, Credited};
use dotmac_billing::{Applied, Settlement, SettlementError};
use dotmac_schema::money::{Currency, Rounding};
use dotmac_schema::{InvoiceStatus, PaymentMethod, Role};
use rust_decimal::Decimal;

use super::Billing;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::parse_id;
use crate::store::audit_log::{self, AuditEntry};
use crate::store::billing_rows::{self as rows, dec, CreditNoteRow, InvoiceRow, PaymentRow};

/// Issuer of credit-note numbers (gapless, like invoices').
pub const CREDIT_NOTE_ISSUER: &str = "DM-CN";

/// One credited line as stored on a credit note.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreditedLine {
    pub line: usize,
    pub net: Decimal,
    pub tax: Decimal,
}

fn money(text: &str, field: &str) -> ApiResult<Decimal> {
    let d: Decimal = text
        .trim()
        .parse()
        .map_err(|_| ApiError::validation(field, "must be a decimal number such as 12.50"))?;
    if d <= Decimal::ZERO {
        return Err(ApiError::validation(field, "must be greater than 0"));
    }
    Ok(d)
}

fn currency(row: &InvoiceRow) -> ApiResult<Currency> {
    rows::currency(&row.currency)
}

fn settlement(row: &InvoiceRow) -> ApiResult<Settlement> {
    Ok(Settlement {
        due: dec(&row.amount_due)? + dec(&row.paid)? + dec(&row.credited)?,
        credited: dec(&row.credited)?,
        paid: dec(&row.paid)?,
    })
}

/// Applies an amount to `row` through its settlement (`op` credits or pays
/// it; a refusal names `field`), sets the balance and status (settled is
/// `paid`), and moves what exceeds the balance to the tenant's credit.
async fn apply(
    billing: &Billing,
    tx: &crate::store::Tx,
    row: &mut InvoiceRow,
    field: &str,
    op: impl FnOnce(&mut Settlement) -> Result<Applied, SettlementError>,
) -> ApiResult<Applied> {
    let mut s = settlement(row)?;
    let applied = op(&mut s).map_err(|e| ApiError::validation(field, e.to_string()))?;
    let currency = currency(row)?;
    row.paid = currency.format(s.paid);
    row.credited = currency.format(s.credited);
    row.amount_due = currency.format(s.balance());
    if s.is_paid() {
        row.status = InvoiceStatus::Paid;
    }
    row.updated_at = billing.clock.now();
    rows::add_credit_balance(tx, &row.tenant_id, &row.currency, applied.to_credit_balance).await?;
    Ok(applied)
}

/// Credits a finalized invoice: every line in full when `lines` is `None`,
/// else the given net amounts of the given lines (0-based).
pub async fn create_credit_note(
    billing: &Billing,
    ctx: &RequestCtx,
    invoice_id: &str,
    reason: &str,
    lines: Option<Vec<(usize, String)>>,
) -> ApiResult<CreditNoteRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let reason = crate::service::required_text("input.reason", reason, 500)?;
    let id: dotmac_schema::InvoiceId = parse_id("input.invoiceId", invoice_id)?;
    let tx = billing.store.begin(&p.scope).await?;
    let mut invoice = rows::lock_invoice(&tx, &p.scope, id.as_str()).await?;
    if !invoice.status.settleable() {
        return Err(ApiError::conflict(
            "input.invoiceId",
            format!("a {} invoice cannot be credited", invoice.status),
        ));
    }
    let cur = currency(&invoice)?;
    let invoice_lines = rows::lines(&invoice)?;
    // What earlier notes credited, per line.
    let mut before = vec![Credited::default(); invoice_lines.len()];
    for note in rows::credit_notes_of(&tx, &invoice.id).await? {
        let done: Vec<CreditedLine> = serde_json::from_str(&note.lines)
            .map_err(|e| ApiError::internal(format!("stored credit note: {e}")))?;
        for c in done {
            if let Some(b) = before.get_mut(c.line) {
                b.net += c.net;
                b.tax += c.tax;
            }
        }
    }
    let wanted: Vec<(usize, Decimal)> = match lines {
        None => invoice_lines
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                let left = l.net - before[i].net;
                (left > Decimal::ZERO).then_some((i, left))
            })
            .collect(),
        Some(given) => given
            .iter()
            .enumerate()
            .map(|(k, (line, amount))| {
                Ok((*line, money(amount, &format!("input.lines[{k}].amount"))?))
            })
            .collect::<ApiResult<_>>()?,
    };
    if wanted.is_empty() {
        return Err(ApiError::conflict(
            "input.invoiceId",
            "nothing is left to credit",
        ));
    }
    let mut credited = Vec::new();
    for (k, (line, net)) in wanted.iter().enumerate() {
        let field = format!("input.lines[{k}]");
        let l = invoice_lines
            .get(*line)
            .ok_or_else(|| ApiError::validation(format!("{field}.line"), "no such line"))?;
        let c: CreditLine = credit_line(l, before[*line], *net, cur, Rounding::default())
            .map_err(|e| ApiError::validation(format!("{field}.amount"), e.to_string()))?;
        before[*line].net += c.net;
        before[*line].tax += c.tax;
        credited.push(CreditedLine {
            line: *line,
            net: c.net,
            tax: c.tax,
        });
    }
    let total: Decimal = credited.iter().map(|c| c.net + c.tax).sum();
    let applied = apply(billing, &tx, &mut invoice, "input.lines", |s| {
        s.credit(total)
    })
    .await?;
    let note = CreditNoteRow {
        id: format!("crn_{}", uuid::Uuid::now_v7().simple()),
        tenant_id: invoice.tenant_id.clone(),
        invoice_id: invoice.id.clone(),
        number: rows::next_number(&tx, CREDIT_NOTE_ISSUER).await?,
        reason,
        lines: serde_json::to_string(&credited).map_err(|e| ApiError::internal(e.to_string()))?,
        total: currency(&invoice)?.format(total),
        to_credit_balance: currency(&invoice)?.format(applied.to_credit_balance),
        created_at: invoice.updated_at,
    };
    let note = rows::insert_credit_note(&tx, note).await?;
    let tenant_id = invoice.tenant_id.clone();
    rows::save_invoice(&tx, invoice).await?;
    audit_log::record(
        &tx,
        billing.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "credit_note.create",
            tenant_id: Some(tenant_id),
            object_id: Some(note.id.clone()),
            after: Some(format!("{}:{}", note.number, note.total)),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(note)
}

/// A payment as received.
#[derive(Debug, Clone, Copy)]
pub struct NewPayment<'a> {
    pub invoice_id: &'a str,
    /// Decimal text in the invoice's currency.
    pub amount: &'a str,
    /// The currency the sender says it paid in, when it says: it must be
    /// the invoice's.
    pub currency: Option<&'a str>,
    /// The payment's id at its source; unique.
    pub reference: &'a str,
    pub method: PaymentMethod,
    pub received_at: DateTime<Utc>,
}

/// Manual payments are recorded by platform admins.
pub async fn record_manual_payment(
    billing: &Billing,
    ctx: &RequestCtx,
    input: NewPayment<'_>,
) -> ApiResult<PaymentRow> {
    ctx.writer_with(&[Role::PlatformAdmin])?;
    record_payment(billing, ctx, input).await
}

/// Records a payment against an invoice. A reference already recorded for
/// the same invoice and amount returns that payment (webhooks redeliver);
/// for anything else it is a conflict.
pub async fn record_payment(
    billing: &Billing,
    ctx: &RequestCtx,
    input: NewPayment<'_>,
) -> ApiResult<PaymentRow> {
    let NewPayment {
        invoice_id,
        amount,
        currency: sent_currency,
        reference,
        method,
        received_at,
    } = input;
    let principal = ctx.principal()?;
    let amount = money(amount, "input.amount")?;
    let reference = crate::service::required_text("input.reference", reference, 200)?;
    let id: dotmac_schema::InvoiceId = parse_id("input.invoiceId", invoice_id)?;
    let scope = principal.scope.clone();
    let tx = billing.store.begin(&scope).await?;
    // The reference is checked under the invoice's lock: a redelivery that
    // raced the first delivery waits for it, then finds its payment.
    let mut invoice = rows::lock_invoice(&tx, &scope, id.as_str()).await?;
    if let Some(existing) = rows::payment_by_reference(&tx, &reference).await? {
        if existing.invoice_id == id.as_str() && dec(&existing.amount)? == amount {
            return Ok(existing);
        }
        return Err(ApiError::conflict(
            "input.reference",
            "this reference is already recorded for another payment",
        ));
    }
    if !invoice.status.settleable() {
        return Err(ApiError::conflict(
            "input.invoiceId",
            format!("a {} invoice cannot be paid", invoice.status),
        ));
    }
    if let Some(sent) = sent_currency.filter(|c| *c != invoice.currency) {
        return Err(ApiError::validation(
            "currency",
            format!("the invoice is in {}, not {sent}", invoice.currency),
        ));
    }
    let cur = currency(&invoice)?;
    if Rounding::default().round(amount, cur) != amount {
        return Err(ApiError::validation(
            "input.amount",
            format!("must be a whole number of minor units of {cur}"),
        ));
    }
    let applied = apply(billing, &tx, &mut invoice, "input.amount", |s| {
        s.pay(amount)
    })
    .await?;
    let payment = PaymentRow {
        id: format!("pay_{}", uuid::Uuid::now_v7().simple()),
        tenant_id: invoice.tenant_id.clone(),
        invoice_id: invoice.id.clone(),
        amount: currency(&invoice)?.format(amount),
        currency: invoice.currency.clone(),
        method,
        reference,
        to_invoice: currency(&invoice)?.format(applied.to_invoice),
        to_credit_balance: currency(&invoice)?.format(applied.to_credit_balance),
        received_at,
    };
    let payment = rows::insert_payment(&tx, payment).await?;
    let tenant_id = invoice.tenant_id.clone();
    rows::save_invoice(&tx, invoice).await?;
    audit_log::record(
        &tx,
        billing.clock.now(),
        Some(principal),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "payment.record",
            tenant_id: Some(tenant_id),
            object_id: Some(payment.id.clone()),
            after: Some(format!("{}:{}", payment.amount, payment.method.as_str())),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(payment)
}

/// Voids (no payment or credit yet) or writes off an invoice.
pub async fn set_status(
    billing: &Billing,
    ctx: &RequestCtx,
    invoice_id: &str,
    to: InvoiceStatus,
    reason: &str,
) -> ApiResult<InvoiceRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let reason = crate::service::required_text("reason", reason, 500)?;
    let id: dotmac_schema::InvoiceId = parse_id("id", invoice_id)?;
    let tx = billing.store.begin(&p.scope).await?;
    let mut invoice = rows::lock_invoice(&tx, &p.scope, id.as_str()).await?;
    let untouched = dec(&invoice.paid)?.is_zero() && dec(&invoice.credited)?.is_zero();
    if !invoice.status.may_become(to, untouched) {
        return Err(ApiError::conflict(
            "id",
            format!(
                "a {} invoice cannot become {to}{}",
                invoice.status,
                if to == InvoiceStatus::Void && !untouched {
                    " after payments or credit notes"
                } else {
                    ""
                }
            ),
        ));
    }
    let before = invoice.status;
    invoice.status = to;
    invoice.status_reason = Some(reason);
    if to == InvoiceStatus::Void {
        invoice.amount_due = currency(&invoice)?.format(Decimal::ZERO);
    }
    invoice.updated_at = billing.clock.now();
    let invoice = rows::save_invoice(&tx, invoice).await?;
    audit_log::record(
        &tx,
        billing.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: if to == InvoiceStatus::Void {
                "invoice.void"
            } else {
                "invoice.uncollectible"
            },
            tenant_id: Some(invoice.tenant_id.clone()),
            object_id: Some(invoice.id.clone()),
            before: Some(before.to_string()),
            after: Some(to.to_string()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(invoice)
}

//! Finalizing drafts in a close's transaction: numbers drawn for exactly
//! the drafts that are still drafts, and what their announcement says.

use chrono::{DateTime, Utc};
use dotmac_billing::{due_at, invoice_number};
use dotmac_schema::InvoiceStatus;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::credit_balances::apply_prepaid_credit;
use super::numbering::reserve_numbers;
use super::{FinalizedInvoice, InvoiceRow};
use crate::error::{ApiError, ApiResult};
use crate::store::entity::invoice;
use crate::store::Tx;

/// Finalizes the drafts among `ids` in `tx`: locks them (in id order; a
/// close holds the issuer's sequence already, see `domain::close`), draws
/// exactly as many numbers as it
/// finalizes from the issuer's sequence, applies prepaid credit, and
/// returns what to announce. Invoices no longer drafts (another close
/// won) draw no number: the sequence stays gapless.
pub async fn finalize_many(
    tx: &Tx,
    ids: &[String],
    issuer: &str,
    now: DateTime<Utc>,
) -> ApiResult<Vec<FinalizedInvoice>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Only the columns an announcement needs: the lines stay in the table.
    let mut q = invoice::Entity::find()
        .select_only()
        .columns([
            invoice::Column::Id,
            invoice::Column::TenantId,
            invoice::Column::Total,
            invoice::Column::Currency,
        ])
        .filter(invoice::Column::Id.is_in(ids.iter().cloned()))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .order_by_asc(invoice::Column::Id);
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    let drafts: Vec<(String, String, String, String)> = q.into_tuple().all(tx).await?;
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let first = reserve_numbers(tx, issuer, drafts.len()).await?;
    // One statement for the chunk: each id gets its number by a CASE. The
    // ids and numbers are ours (checked to be [A-Za-z0-9_-]), so they are
    // safe as literals.
    let safe = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut out = Vec::with_capacity(drafts.len());
    let mut case = String::from("CASE id");
    for (i, (id, tenant_id, total, currency)) in drafts.into_iter().enumerate() {
        let number = invoice_number(issuer, first + i as i64);
        if !safe(&id) || !safe(&number) {
            return Err(ApiError::internal(format!("unexpected invoice id {id:?}")));
        }
        case.push_str(&format!(" WHEN '{id}' THEN '{number}'"));
        out.push(FinalizedInvoice {
            id,
            tenant_id,
            number,
            total,
            currency,
        });
    }
    case.push_str(" END");
    let updated = invoice::Entity::update_many()
        .col_expr(
            invoice::Column::Status,
            Expr::value(InvoiceStatus::Finalized),
        )
        .col_expr(invoice::Column::Number, Expr::cust(case))
        .col_expr(invoice::Column::FinalizedAt, Expr::value(now))
        .col_expr(invoice::Column::DueAt, Expr::value(due_at(now)))
        .col_expr(invoice::Column::UpdatedAt, Expr::value(now))
        .filter(invoice::Column::Id.is_in(out.iter().map(|r| r.id.clone())))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .exec(tx)
        .await?;
    if updated.rows_affected != out.len() as u64 {
        // The rows are locked (or the writer serialized): cannot happen.
        return Err(ApiError::internal(
            "finalizing a chunk changed an unexpected number of rows",
        ));
    }
    apply_prepaid_credit(tx, &out).await?;
    Ok(out)
}

/// Makes a new row finalized with `number` as of `now` (due after
/// net 30), for an insert that finalizes in one write.
pub fn mark_finalized(row: &mut InvoiceRow, number: String, now: DateTime<Utc>) {
    row.status = InvoiceStatus::Finalized;
    row.number = Some(number);
    row.finalized_at = Some(now);
    row.due_at = Some(due_at(now));
    row.updated_at = now;
}

/// What announcing `row`'s finalization says.
pub fn announced(row: &InvoiceRow) -> FinalizedInvoice {
    FinalizedInvoice {
        id: row.id.clone(),
        tenant_id: row.tenant_id.clone(),
        number: row.number.clone().unwrap_or_default(),
        total: row.total.clone(),
        currency: row.currency.clone(),
    }
}

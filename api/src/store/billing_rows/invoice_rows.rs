//! Invoice rows: what a close reads (drafts, settled invoices, discounted
//! periods) in bounded queries, what it writes (new rows, updated drafts),
//! and the scoped reads and row locks of the API.

use chrono::{DateTime, NaiveDate, Utc};
use dotmac_schema::{InvoiceStatus, Scope};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::invoice_bulk_insert::unnest_insert;
use super::{dec, InvoiceRow};
use crate::error::{ApiError, ApiResult};
use crate::store::entity::invoice;
use crate::store::{fetch_page, owned_by_tenant_in, Page, PageRequest, Tx};

/// The subscription's invoice for the period starting at `start`, if any.
pub async fn invoice_for(
    tx: &Tx,
    subscription_id: &str,
    start: NaiveDate,
) -> ApiResult<Option<InvoiceRow>> {
    Ok(invoice::Entity::find()
        .filter(invoice::Column::SubscriptionId.eq(subscription_id))
        .filter(invoice::Column::PeriodStart.eq(start.to_string()))
        .one(tx)
        .await?)
}

/// The subscription's invoices that count as billed (finalized, not
/// voided), in finalization order.
pub async fn billed_invoices(tx: &Tx, subscription_id: &str) -> ApiResult<Vec<InvoiceRow>> {
    Ok(invoice::Entity::find()
        .filter(invoice::Column::SubscriptionId.eq(subscription_id))
        .filter(counts_as_billed())
        .order_by_asc(invoice::Column::FinalizedAt)
        .all(tx)
        .await?)
}

/// Updates a draft's amounts; `false` when it is no longer a draft.
pub async fn update_draft(tx: &Tx, row: &InvoiceRow, now: DateTime<Utc>) -> ApiResult<bool> {
    let res = invoice::Entity::update_many()
        .col_expr(invoice::Column::Subtotal, Expr::value(row.subtotal.clone()))
        .col_expr(invoice::Column::Discount, Expr::value(row.discount.clone()))
        .col_expr(invoice::Column::Tax, Expr::value(row.tax.clone()))
        .col_expr(invoice::Column::Total, Expr::value(row.total.clone()))
        .col_expr(
            invoice::Column::AmountDue,
            Expr::value(row.amount_due.clone()),
        )
        .col_expr(invoice::Column::Lines, Expr::value(row.lines.clone()))
        .col_expr(invoice::Column::UpdatedAt, Expr::value(now))
        .filter(invoice::Column::Id.eq(row.id.as_str()))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// An invoice in `scope`, locked for update until `tx` ends (a row lock on
/// Postgres; SQLite has one writer at a time).
pub async fn lock_invoice(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<InvoiceRow> {
    let mut q = invoice::Entity::find_by_id(id)
        .filter(owned_by_tenant_in(scope, invoice::Column::TenantId));
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(tx).await?.ok_or(ApiError::not_found("invoice"))
}

pub async fn save_invoice(tx: &Tx, row: InvoiceRow) -> ApiResult<InvoiceRow> {
    Ok(invoice::ActiveModel::from(row)
        .reset_all()
        .update(tx)
        .await?)
}

/// Finalized invoices still owing something (for dunning), system scope.
pub async fn open_invoices(tx: &Tx) -> ApiResult<Vec<InvoiceRow>> {
    Ok(invoice::Entity::find()
        .filter(
            invoice::Column::Status.is_in([InvoiceStatus::Finalized, InvoiceStatus::Uncollectible]),
        )
        .all(tx)
        .await?)
}

pub async fn list_invoices(
    tx: &Tx,
    scope: &Scope,
    tenant_id: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<InvoiceRow>> {
    let mut q =
        invoice::Entity::find().filter(owned_by_tenant_in(scope, invoice::Column::TenantId));
    if let Some(t) = tenant_id {
        q = q.filter(invoice::Column::TenantId.eq(t));
    }
    fetch_page(tx, q, invoice::Column::Id, page).await
}

/// An invoice visible in `scope`, or NOT_FOUND.
pub async fn get_invoice(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<InvoiceRow> {
    invoice::Entity::find_by_id(id)
        .filter(owned_by_tenant_in(scope, invoice::Column::TenantId))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("invoice"))
}

/// Draft invoices of the periods starting on `starts` (YYYY-MM-DD),
/// system scope: what a close may rewrite.
pub async fn drafts_starting(
    tx: &Tx,
    starts: &std::collections::BTreeSet<String>,
) -> ApiResult<Vec<InvoiceRow>> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(invoice::Entity::find()
        .filter(invoice::Column::PeriodStart.is_in(starts.iter().cloned()))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .all(tx)
        .await?)
}

/// `(subscription, period start)` of the invoices past draft of the
/// periods starting on `starts`: a close only needs to know they exist,
/// not their lines.
pub async fn settled_keys_starting(
    tx: &Tx,
    starts: &std::collections::BTreeSet<String>,
) -> ApiResult<Vec<(String, String)>> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(invoice::Entity::find()
        .select_only()
        .columns([
            invoice::Column::SubscriptionId,
            invoice::Column::PeriodStart,
        ])
        .filter(invoice::Column::PeriodStart.is_in(starts.iter().cloned()))
        .filter(invoice::Column::Status.ne(InvoiceStatus::Draft))
        .into_tuple()
        .all(tx)
        .await?)
}

/// What counts as billed: finalized and not voided. A void invoice bills
/// nothing, so late usage is never adjusted against it and it serves no
/// coupon period.
fn counts_as_billed() -> sea_orm::sea_query::SimpleExpr {
    invoice::Column::Status.is_not_in([InvoiceStatus::Draft, InvoiceStatus::Void])
}

/// Invoices that count as billed of the periods starting on `starts`
/// (system scope): a close's adjustments compare them with the rollups.
pub async fn settled_invoices_starting(
    tx: &Tx,
    starts: &std::collections::BTreeSet<String>,
) -> ApiResult<Vec<InvoiceRow>> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(invoice::Entity::find()
        .filter(invoice::Column::PeriodStart.is_in(starts.iter().cloned()))
        .filter(counts_as_billed())
        .order_by_asc(invoice::Column::FinalizedAt)
        .all(tx)
        .await?)
}

/// The periods (start dates) of each subscription's invoices that count as
/// billed and carry a discount: how many periods a coupon has served.
pub async fn discounted_periods(
    tx: &Tx,
    subscription_ids: &[String],
) -> ApiResult<Vec<(String, String)>> {
    let columns = [
        invoice::Column::SubscriptionId,
        invoice::Column::PeriodStart,
        invoice::Column::Discount,
    ];
    let mut out = Vec::new();
    for (sub, start, discount) in
        columns_of(tx, subscription_ids, columns, counts_as_billed()).await?
    {
        if !dec(&discount)?.is_zero() {
            out.push((sub, start));
        }
    }
    Ok(out)
}

/// The ids of the drafts of these (subscription, period start) pairs.
pub async fn draft_ids_for(tx: &Tx, pairs: &[(String, String)]) -> ApiResult<Vec<String>> {
    let wanted: std::collections::HashSet<&(String, String)> = pairs.iter().collect();
    let subscriptions: Vec<String> = pairs.iter().map(|(s, _)| s.clone()).collect();
    let columns = [
        invoice::Column::Id,
        invoice::Column::SubscriptionId,
        invoice::Column::PeriodStart,
    ];
    let drafts = invoice::Column::Status.eq(InvoiceStatus::Draft);
    Ok(columns_of(tx, &subscriptions, columns, drafts)
        .await?
        .into_iter()
        .filter(|(_, sub, start)| wanted.contains(&(sub.clone(), start.clone())))
        .map(|(id, ..)| id)
        .collect())
}

/// Three text columns of the invoices of `subscription_ids` that match
/// `filter`, read in bounded IN lists (SQLite allows 32,766 parameters per
/// statement).
async fn columns_of(
    tx: &Tx,
    subscription_ids: &[String],
    columns: [invoice::Column; 3],
    filter: sea_orm::sea_query::SimpleExpr,
) -> ApiResult<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for chunk in subscription_ids.chunks(10_000) {
        let rows: Vec<(String, String, String)> = invoice::Entity::find()
            .select_only()
            .columns(columns)
            .filter(invoice::Column::SubscriptionId.is_in(chunk.iter().cloned()))
            .filter(filter.clone())
            .into_tuple()
            .all(tx)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// Inserts a close's new invoices (drafts, or finalized past their grace),
/// skipping those another close inserted first (they meet on the unique
/// period key); returns how many were written.
pub async fn insert_invoices(tx: &Tx, drafts: &[InvoiceRow]) -> ApiResult<usize> {
    if drafts.is_empty() {
        return Ok(0);
    }
    if tx.get_database_backend() == DbBackend::Postgres {
        let res = tx.execute(unnest_insert(drafts)?).await?;
        return Ok(usize::try_from(res.rows_affected()).unwrap_or(usize::MAX));
    }
    let written = invoice::Entity::insert_many(
        drafts
            .iter()
            .cloned()
            .map(|r| invoice::ActiveModel::from(r).reset_all()),
    )
    .on_conflict(
        OnConflict::columns([
            invoice::Column::SubscriptionId,
            invoice::Column::PeriodStart,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    Ok(usize::try_from(written).unwrap_or(usize::MAX))
}

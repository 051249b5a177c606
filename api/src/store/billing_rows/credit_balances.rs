//! Tenants' prepaid credit balances, locked before they are read for a
//! write, and their use by just-finalized invoices.

use dotmac_schema::InvoiceStatus;
use rust_decimal::Decimal;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QuerySelect, Set,
};

use super::{dec, FinalizedInvoice};

use crate::error::{ApiError, ApiResult};
use crate::store::entity::{credit_balance, invoice};
use crate::store::Tx;

/// Uses the tenant's prepaid credit on a just-finalized invoice.
async fn apply_credit_balance(tx: &Tx, invoice_id: &str) -> ApiResult<()> {
    let Some(mut row) = invoice::Entity::find_by_id(invoice_id).one(tx).await? else {
        return Ok(());
    };
    let balance = lock_credit_balance(tx, &row.tenant_id, &row.currency).await?;
    let due = dec(&row.amount_due)?;
    let used = dotmac_billing::prepaid_credit_used(balance, due);
    if used.is_zero() {
        return Ok(());
    }
    set_credit_balance(tx, &row.tenant_id, &row.currency, balance - used).await?;
    let currency = super::currency(&row.currency)?;
    row.credit_applied = currency.format(dec(&row.credit_applied)? + used);
    row.amount_due = currency.format(due - used);
    if (due - used).is_zero() {
        row.status = InvoiceStatus::Paid;
    }
    invoice::ActiveModel::from(row)
        .reset_all()
        .update(tx)
        .await?;
    Ok(())
}

/// The tenant's prepaid credit in `currency`.
pub async fn credit_balance(tx: &Tx, tenant_id: &str, currency: &str) -> ApiResult<Decimal> {
    match credit_balance::Entity::find_by_id((tenant_id.to_owned(), currency.to_owned()))
        .one(tx)
        .await?
    {
        Some(row) => dec(&row.balance),
        None => Ok(Decimal::ZERO),
    }
}

/// Adds `delta` to the tenant's prepaid credit in `currency`, on the
/// balance as locked in `tx`.
pub async fn add_credit_balance(
    tx: &Tx,
    tenant_id: &str,
    currency: &str,
    delta: Decimal,
) -> ApiResult<()> {
    if delta.is_zero() {
        return Ok(());
    }
    let balance = lock_credit_balance(tx, tenant_id, currency).await?;
    set_credit_balance(tx, tenant_id, currency, balance + delta).await
}

/// The tenant's prepaid credit in `currency`, locked until `tx` ends.
/// Whatever adds to or draws on a balance reads it here: two payments that
/// each move an excess to credit at once queue on the row, where reading
/// it unlocked let the later write drop the earlier one's sum (tested).
/// On Postgres the row is created first if missing, so there is always a
/// row to lock; SQLite has one writer at a time.
async fn lock_credit_balance(tx: &Tx, tenant_id: &str, currency: &str) -> ApiResult<Decimal> {
    let key = (tenant_id.to_owned(), currency.to_owned());
    if tx.get_database_backend() != DbBackend::Postgres {
        return credit_balance(tx, tenant_id, currency).await;
    }
    credit_balance::Entity::insert(credit_balance::ActiveModel {
        tenant_id: Set(key.0.clone()),
        currency: Set(key.1.clone()),
        balance: Set("0".into()),
    })
    .on_conflict(
        OnConflict::columns([
            credit_balance::Column::TenantId,
            credit_balance::Column::Currency,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    let row = credit_balance::Entity::find_by_id(key)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or_else(|| ApiError::internal("a credit balance vanished while locked"))?;
    dec(&row.balance)
}

/// Writes the tenant's prepaid credit (locked by [`lock_credit_balance`]).
async fn set_credit_balance(
    tx: &Tx,
    tenant_id: &str,
    currency: &str,
    balance: Decimal,
) -> ApiResult<()> {
    let updated = credit_balance::Entity::update_many()
        .col_expr(
            credit_balance::Column::Balance,
            Expr::value(balance.to_string()),
        )
        .filter(credit_balance::Column::TenantId.eq(tenant_id))
        .filter(credit_balance::Column::Currency.eq(currency))
        .exec(tx)
        .await?;
    if updated.rows_affected == 0 {
        credit_balance::ActiveModel {
            tenant_id: Set(tenant_id.to_owned()),
            currency: Set(currency.to_owned()),
            balance: Set(balance.to_string()),
        }
        .insert(tx)
        .await?;
    }
    Ok(())
}

/// Settles just-finalized invoices with credit: a negative total becomes
/// the tenant's credit (recorded on the invoice as `credit_issued`; nothing
/// is due on it), then prepaid credit is used on the others, for the
/// tenants that have some.
pub async fn apply_prepaid_credit(tx: &Tx, finalized: &[FinalizedInvoice]) -> ApiResult<()> {
    if finalized.is_empty() {
        return Ok(());
    }
    for row in finalized {
        let total = dec(&row.total)?;
        if total < Decimal::ZERO {
            issue_credit(tx, row, -total).await?;
        }
    }
    let tenants: Vec<String> = finalized.iter().map(|r| r.tenant_id.clone()).collect();
    let with_credit: std::collections::HashSet<String> = credit_balance::Entity::find()
        .filter(credit_balance::Column::TenantId.is_in(tenants))
        .all(tx)
        .await?
        .into_iter()
        .filter(|b| dec(&b.balance).is_ok_and(|v| v > Decimal::ZERO))
        .map(|b| b.tenant_id)
        .collect();
    for row in finalized
        .iter()
        .filter(|r| with_credit.contains(&r.tenant_id))
    {
        apply_credit_balance(tx, &row.id).await?;
    }
    Ok(())
}

/// What a negative total owes the tenant goes to its credit balance, and
/// the invoice says so; with nothing due, it is settled.
async fn issue_credit(tx: &Tx, row: &FinalizedInvoice, credit: Decimal) -> ApiResult<()> {
    let currency = super::currency(&row.currency)?;
    add_credit_balance(tx, &row.tenant_id, &row.currency, credit).await?;
    invoice::Entity::update_many()
        .col_expr(
            invoice::Column::CreditIssued,
            sea_orm::sea_query::Expr::value(currency.format(credit)),
        )
        .col_expr(
            invoice::Column::Status,
            sea_orm::sea_query::Expr::value(InvoiceStatus::Paid),
        )
        .filter(invoice::Column::Id.eq(row.id.as_str()))
        .exec(tx)
        .await?;
    Ok(())
}

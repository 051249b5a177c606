//! The per-issuer number sequences: gapless, because numbers are reserved
//! under a row lock in the transaction that uses them.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use dotmac_billing::invoice_number;

use crate::error::{ApiError, ApiResult};
use crate::store::entity::invoice_sequence;
use crate::store::Tx;

/// The issuer's next number, in `tx` (see [`reserve_numbers`]).
pub async fn next_number(tx: &Tx, issuer: &str) -> ApiResult<String> {
    let n = reserve_numbers(tx, issuer, 1).await?;
    Ok(invoice_number(issuer, n))
}

/// Locks the issuer's number sequence (creating it) until `tx` ends.
pub async fn lock_sequence(tx: &Tx, issuer: &str) -> ApiResult<()> {
    reserve_numbers(tx, issuer, 0).await.map(|_| ())
}

/// Reserves `n` consecutive numbers of the issuer and returns the first.
/// The sequence row stays locked until `tx` ends (Postgres row lock;
/// SQLite serializes writers), so a rolled-back transaction gives its
/// numbers back and numbers stay gapless.
pub async fn reserve_numbers(tx: &Tx, issuer: &str, n: usize) -> ApiResult<i64> {
    // Bound as a 32-bit integer: Postgres types `bigint + $1` as int4.
    let n = i32::try_from(n).map_err(|e| ApiError::internal(e.to_string()))?;
    invoice_sequence::Entity::insert(invoice_sequence::ActiveModel {
        issuer: Set(issuer.to_owned()),
        next_number: Set(1),
    })
    .on_conflict(
        OnConflict::column(invoice_sequence::Column::Issuer)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    invoice_sequence::Entity::update_many()
        .col_expr(
            invoice_sequence::Column::NextNumber,
            Expr::col(invoice_sequence::Column::NextNumber).add(n),
        )
        .filter(invoice_sequence::Column::Issuer.eq(issuer))
        .exec(tx)
        .await?;
    let next = invoice_sequence::Entity::find_by_id(issuer)
        .one(tx)
        .await?
        .ok_or_else(|| ApiError::internal("invoice sequence row vanished"))?
        .next_number;
    Ok(next - i64::from(n))
}

//! Failed sign-ins per (account, client): counted before the password is
//! checked, locked with exponential backoff, cleared by a success. Read
//! and written by the authentication path only (system scope).

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict, SimpleExpr};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, Set};

use super::entity::login_attempt::{self, Column, Entity};
use super::Tx;
use crate::error::{ApiError, ApiResult};

pub use login_attempt::Model as LoginAttempt;

/// Counts one attempt of `user` from `client` (unless the client is locked
/// out, when attempts count for nothing) and returns the count with the
/// lock. Atomic: parallel guesses each get their own number.
pub async fn reserve(
    tx: &Tx,
    user: &str,
    client: &str,
    now: DateTime<Utc>,
) -> ApiResult<LoginAttempt> {
    let failures = || Expr::col((Entity, Column::Failures));
    let locked = Expr::col((Entity, Column::LockedUntil)).gt(now);
    let counted: SimpleExpr = Expr::case(locked, failures())
        .finally(failures().add(1))
        .into();
    Entity::insert(login_attempt::ActiveModel {
        user_id: Set(user.to_owned()),
        client: Set(client.to_owned()),
        failures: Set(1),
        locks: Set(0),
        locked_until: Set(None),
    })
    .on_conflict(
        OnConflict::columns([Column::UserId, Column::Client])
            .value(Column::Failures, counted)
            .to_owned(),
    )
    .exec(tx)
    .await?;
    Entity::find_by_id((user.to_owned(), client.to_owned()))
        .one(tx)
        .await?
        .ok_or_else(|| ApiError::internal("a reserved login attempt vanished"))
}

/// Locks `client` out of `user` until `until`: the `locks`-th lock. The
/// count starts again for when it ends.
pub async fn lock(
    tx: &Tx,
    user: &str,
    client: &str,
    until: DateTime<Utc>,
    locks: i32,
) -> ApiResult<()> {
    Entity::update_many()
        .col_expr(Column::LockedUntil, Expr::value(until))
        .col_expr(Column::Locks, Expr::value(locks))
        .col_expr(Column::Failures, Expr::value(0))
        .filter(Column::UserId.eq(user))
        .filter(Column::Client.eq(client))
        .exec(tx)
        .await?;
    Ok(())
}

/// A success from `client` forgets its failures and locks.
pub async fn clear(tx: &Tx, user: &str, client: &str) -> ApiResult<()> {
    Entity::update_many()
        .col_expr(Column::Failures, Expr::value(0))
        .col_expr(Column::Locks, Expr::value(0))
        .col_expr(
            Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(Column::UserId.eq(user))
        .filter(Column::Client.eq(client))
        .exec(tx)
        .await?;
    Ok(())
}

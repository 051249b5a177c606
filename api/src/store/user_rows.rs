//! User rows. Look-up by email is part of authentication and runs in the
//! system scope; everything else is scoped like any other store call.

use chrono::{DateTime, Utc};
use dotmac_schema::{Scope, UserId};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};

use super::entity::user;
use super::{into_page, owned_by_tenant_in, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};

pub use user::Model as UserRow;

fn visible(scope: &Scope) -> Condition {
    match scope {
        Scope::All => Condition::all(),
        Scope::Reseller(r) => Condition::any()
            .add(user::Column::ResellerId.eq(r.as_str()))
            .add(owned_by_tenant_in(scope, user::Column::TenantId)),
        Scope::Tenant(t) => Condition::all().add(user::Column::TenantId.eq(t.as_str())),
    }
}

/// Authentication only: the caller has no scope yet.
pub async fn find_by_email_system(tx: &Tx, email: &str) -> ApiResult<Option<UserRow>> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email.to_lowercase()))
        .one(tx)
        .await?)
}

pub async fn get(tx: &Tx, scope: &Scope, id: &UserId) -> ApiResult<UserRow> {
    user::Entity::find_by_id(id.as_str())
        .filter(visible(scope))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("user"))
}

pub async fn list(tx: &Tx, scope: &Scope, page: PageRequest<'_>) -> ApiResult<Page<UserRow>> {
    let mut q = user::Entity::find().filter(visible(scope));
    if let Some(after) = page.after {
        q = q.filter(user::Column::Id.gt(after));
    }
    let rows = q
        .order_by_asc(user::Column::Id)
        .limit(page.first + 1)
        .all(tx)
        .await?;
    Ok(into_page(rows, page.first))
}

pub async fn insert(tx: &Tx, row: UserRow) -> ApiResult<UserRow> {
    user::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                ApiError::conflict("email", "a user with this email already exists")
            } else {
                e.into()
            }
        })
}

/// Counts a sign-in attempt before its password is checked, atomically, so
/// that parallel guesses cannot all pass the lockout check. An expired lock
/// starts a fresh count. Returns the row as it is after the count.
pub async fn reserve_attempt(tx: &Tx, id: &str, now: DateTime<Utc>) -> ApiResult<UserRow> {
    use sea_orm::sea_query::SimpleExpr;
    let expired = Condition::all()
        .add(user::Column::LockedUntil.is_not_null())
        .add(user::Column::LockedUntil.lte(now));
    let count: SimpleExpr = Expr::case(expired.clone(), Expr::val(1))
        .finally(Expr::col(user::Column::FailedLogins).add(1))
        .into();
    let lock: SimpleExpr = Expr::case(expired, Expr::val(Option::<DateTime<Utc>>::None))
        .finally(Expr::col(user::Column::LockedUntil))
        .into();
    user::Entity::update_many()
        .col_expr(user::Column::FailedLogins, count)
        .col_expr(user::Column::LockedUntil, lock)
        .filter(user::Column::Id.eq(id))
        .exec(tx)
        .await?;
    user::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("user"))
}

/// Locks the account until `until`; the count stays so that attempts already
/// under way are refused too.
pub async fn lock(tx: &Tx, id: &str, until: DateTime<Utc>) -> ApiResult<()> {
    user::Entity::update_many()
        .col_expr(user::Column::LockedUntil, Expr::value(until))
        .filter(user::Column::Id.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// A successful sign-in clears the attempt count.
pub async fn record_success(tx: &Tx, id: &str) -> ApiResult<()> {
    user::Entity::update_many()
        .col_expr(user::Column::FailedLogins, Expr::value(0))
        .col_expr(
            user::Column::LockedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(user::Column::Id.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// Moves the user's token generation on: every access token issued before
/// is refused from now on.
pub async fn next_token_generation(tx: &Tx, id: &str) -> ApiResult<()> {
    user::Entity::update_many()
        .col_expr(
            user::Column::TokenGeneration,
            Expr::col(user::Column::TokenGeneration).add(1),
        )
        .filter(user::Column::Id.eq(id))
        .exec(tx)
        .await?;
    Ok(())
}

/// The user's current token generation (authentication path: no scope);
/// `None` when the user no longer exists.
pub async fn token_generation_system(tx: &Tx, id: &str) -> ApiResult<Option<i32>> {
    Ok(user::Entity::find_by_id(id)
        .one(tx)
        .await?
        .map(|u| u.token_generation))
}

pub async fn set_password(tx: &Tx, row: &UserRow, hash: String) -> ApiResult<()> {
    let mut active: user::ActiveModel = row.clone().into();
    active.password_hash = Set(hash);
    active.update(tx).await?;
    Ok(())
}

//! User rows. Look-up by email is part of authentication and runs in the
//! system scope; everything else is scoped like any other store call.

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

//! User rows. Look-up by email is part of authentication and runs in the
//! system scope; everything else is scoped like any other store call.

use chrono::{DateTime, Utc};
use dotmac_schema::{Scope, UserId};
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

/// Records a failed login; locks the account once `max_failures` is reached.
pub async fn record_failure(
    tx: &Tx,
    row: &UserRow,
    max_failures: i32,
    lock_until: DateTime<Utc>,
) -> ApiResult<()> {
    let failures = row.failed_logins + 1;
    let mut active: user::ActiveModel = row.clone().into();
    if failures >= max_failures {
        active.failed_logins = Set(0);
        active.locked_until = Set(Some(lock_until));
    } else {
        active.failed_logins = Set(failures);
    }
    active.update(tx).await?;
    Ok(())
}

pub async fn record_success(tx: &Tx, row: &UserRow) -> ApiResult<()> {
    if row.failed_logins == 0 && row.locked_until.is_none() {
        return Ok(());
    }
    let mut active: user::ActiveModel = row.clone().into();
    active.failed_logins = Set(0);
    active.locked_until = Set(None);
    active.update(tx).await?;
    Ok(())
}

pub async fn set_password(tx: &Tx, row: &UserRow, hash: String) -> ApiResult<()> {
    let mut active: user::ActiveModel = row.clone().into();
    active.password_hash = Set(hash);
    active.update(tx).await?;
    Ok(())
}

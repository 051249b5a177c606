//! Refresh tokens (rotating, revocable, grouped in families for reuse
//! detection) and invitation tokens. Only hashes are stored.

use chrono::{DateTime, Utc};
use dotmac_schema::Scope;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};

use super::entity::{invitation, refresh_token};
use super::{owned_by_tenant_in, Tx};
use crate::error::ApiResult;

pub use invitation::Model as InvitationRow;
pub use refresh_token::Model as RefreshRow;

pub async fn insert_refresh(tx: &Tx, row: RefreshRow) -> ApiResult<()> {
    refresh_token::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?;
    Ok(())
}

pub async fn find_refresh(tx: &Tx, token_hash: &str) -> ApiResult<Option<RefreshRow>> {
    Ok(refresh_token::Entity::find()
        .filter(refresh_token::Column::TokenHash.eq(token_hash))
        .one(tx)
        .await?)
}

/// Whether the session (refresh-token family) still has a live token, i.e.
/// was not signed out of or revoked for reuse (authentication path).
pub async fn session_live_system(tx: &Tx, family_id: &str) -> ApiResult<bool> {
    Ok(refresh_token::Entity::find()
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .one(tx)
        .await?
        .is_some())
}

/// Revokes every live token of a family (logout, or reuse of a rotated token).
pub async fn revoke_family(tx: &Tx, family_id: &str, now: DateTime<Utc>) -> ApiResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::FamilyId.eq(family_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(tx)
        .await?;
    Ok(())
}

/// Revokes one token if it is still live; false when another request
/// already rotated it (so two refreshes with one token cannot both succeed).
pub async fn revoke_if_live(tx: &Tx, row: &RefreshRow, now: DateTime<Utc>) -> ApiResult<bool> {
    let done = refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::Id.eq(row.id.as_str()))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(tx)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Ends every session of a user (after a password change).
pub async fn revoke_all_of_user(tx: &Tx, user_id: &str, now: DateTime<Utc>) -> ApiResult<()> {
    refresh_token::Entity::update_many()
        .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
        .filter(refresh_token::Column::UserId.eq(user_id))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(tx)
        .await?;
    Ok(())
}

pub async fn insert_invitation(tx: &Tx, row: InvitationRow) -> ApiResult<InvitationRow> {
    Ok(invitation::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

/// Accepting an invitation is unauthenticated: found by its token in the system scope.
pub async fn find_invitation_system(tx: &Tx, token_hash: &str) -> ApiResult<Option<InvitationRow>> {
    Ok(invitation::Entity::find()
        .filter(invitation::Column::TokenHash.eq(token_hash))
        .one(tx)
        .await?)
}

/// Marks the invitation accepted unless it already is; false when another
/// request accepted it first.
pub async fn mark_accepted(tx: &Tx, row: &InvitationRow, now: DateTime<Utc>) -> ApiResult<bool> {
    let done = invitation::Entity::update_many()
        .col_expr(invitation::Column::AcceptedAt, Expr::value(now))
        .filter(invitation::Column::Id.eq(row.id.as_str()))
        .filter(invitation::Column::AcceptedAt.is_null())
        .exec(tx)
        .await?;
    Ok(done.rows_affected == 1)
}

/// Open invitations visible in scope (for listing).
pub async fn pending_invitations(tx: &Tx, scope: &Scope) -> ApiResult<Vec<InvitationRow>> {
    let q = invitation::Entity::find().filter(invitation::Column::AcceptedAt.is_null());
    let q = match scope {
        Scope::All => q,
        Scope::Reseller(r) => q.filter(
            sea_orm::Condition::any()
                .add(invitation::Column::ResellerId.eq(r.as_str()))
                .add(owned_by_tenant_in(scope, invitation::Column::TenantId)),
        ),
        Scope::Tenant(t) => q.filter(invitation::Column::TenantId.eq(t.as_str())),
    };
    Ok(q.all(tx).await?)
}

//! Subscription rows, their plan changes and pauses.

use chrono::{DateTime, Utc};
use dotmac_schema::{Scope, SubscriptionState};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder};

use super::{PauseRow, PlanChangeRow, SubscriptionRow};
use crate::error::{ApiError, ApiResult};
use crate::store::entity::{plan_change, subscription, subscription_pause};
use crate::store::{fetch_page, owned_by_tenant_in, Page, PageRequest, Tx};

pub async fn insert_subscription(tx: &Tx, row: SubscriptionRow) -> ApiResult<SubscriptionRow> {
    subscription::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await
        .map_err(|e| {
            if crate::store::is_unique_violation(&e) {
                ApiError::conflict(
                    "input.tenantId",
                    "the tenant already has a live subscription",
                )
            } else if e.to_string().contains("subscriptions_no_overlap") {
                // The store's rule (an exclusion constraint on Postgres, a
                // trigger on SQLite): no instant is covered, and billed,
                // twice.
                ApiError::conflict(
                    "input.anchorDate",
                    "another subscription of the tenant covers part of the time from this anchor; anchor it on or after that one's cancellation",
                )
            } else {
                e.into()
            }
        })
}

/// Every subscription (system scope: the close decides which to bill).
pub async fn all_subscriptions(tx: &Tx) -> ApiResult<Vec<SubscriptionRow>> {
    Ok(subscription::Entity::find()
        .order_by_asc(subscription::Column::Id)
        .all(tx)
        .await?)
}

/// Every subscription in `scope`.
pub async fn subscriptions_in(tx: &Tx, scope: &Scope) -> ApiResult<Vec<SubscriptionRow>> {
    Ok(subscription::Entity::find()
        .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
        .order_by_asc(subscription::Column::Id)
        .all(tx)
        .await?)
}

/// Every pause, oldest first (system scope).
pub async fn pauses(tx: &Tx) -> ApiResult<Vec<PauseRow>> {
    Ok(subscription_pause::Entity::find()
        .order_by_asc(subscription_pause::Column::PausedAt)
        .all(tx)
        .await?)
}

pub async fn insert_pause(tx: &Tx, row: PauseRow) -> ApiResult<PauseRow> {
    Ok(subscription_pause::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

/// Ends the open pause of a subscription at `at`.
pub async fn end_pause(tx: &Tx, subscription_id: &str, at: DateTime<Utc>) -> ApiResult<()> {
    subscription_pause::Entity::update_many()
        .col_expr(subscription_pause::Column::ResumedAt, Expr::value(at))
        .filter(subscription_pause::Column::SubscriptionId.eq(subscription_id))
        .filter(subscription_pause::Column::ResumedAt.is_null())
        .exec(tx)
        .await?;
    Ok(())
}

/// Every plan change, oldest first.
pub async fn plan_changes(tx: &Tx) -> ApiResult<Vec<PlanChangeRow>> {
    Ok(plan_change::Entity::find()
        .order_by_asc(plan_change::Column::ChangedAt)
        .all(tx)
        .await?)
}

pub async fn insert_plan_change(tx: &Tx, row: PlanChangeRow) -> ApiResult<PlanChangeRow> {
    Ok(plan_change::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

pub async fn get_subscription(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<SubscriptionRow> {
    subscription::Entity::find_by_id(id)
        .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("subscription"))
}

pub async fn save_subscription(tx: &Tx, row: SubscriptionRow) -> ApiResult<SubscriptionRow> {
    Ok(subscription::ActiveModel::from(row)
        .reset_all()
        .update(tx)
        .await?)
}

/// Trials that ended by `now` become active; returns how many.
pub async fn activate_ended_trials(tx: &Tx, now: DateTime<Utc>) -> ApiResult<u64> {
    let res = subscription::Entity::update_many()
        .col_expr(
            subscription::Column::State,
            Expr::value(SubscriptionState::Active),
        )
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
        .filter(subscription::Column::State.eq(SubscriptionState::Trial))
        .filter(subscription::Column::TrialEndsAt.lte(now))
        .exec(tx)
        .await?;
    Ok(res.rows_affected)
}

/// Moves a subscription from state `from` to `to` at `now`, only if it is
/// still in `from`.
pub async fn move_subscription_state(
    tx: &Tx,
    id: &str,
    from: SubscriptionState,
    to: SubscriptionState,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    subscription::Entity::update_many()
        .col_expr(subscription::Column::State, Expr::value(to))
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
        .filter(subscription::Column::Id.eq(id))
        .filter(subscription::Column::State.eq(from))
        .exec(tx)
        .await?;
    Ok(())
}

/// Cancels every live subscription whose `cancels_at` is at or before
/// `now`, dated `cancels_at`; how many.
pub async fn end_due_cancellations(
    tx: &Tx,
    now: DateTime<Utc>,
    updated_at: DateTime<Utc>,
) -> ApiResult<u64> {
    let res = subscription::Entity::update_many()
        .col_expr(
            subscription::Column::State,
            Expr::value(SubscriptionState::Cancelled),
        )
        .col_expr(
            subscription::Column::CancelledAt,
            Expr::col(subscription::Column::CancelsAt).into(),
        )
        .col_expr(subscription::Column::UpdatedAt, Expr::value(updated_at))
        .filter(subscription::Column::State.ne(SubscriptionState::Cancelled))
        .filter(subscription::Column::CancelsAt.lte(now))
        .exec(tx)
        .await?;
    Ok(res.rows_affected)
}

/// Every subscription not cancelled (in the transaction's scope).
pub async fn live_subscriptions(tx: &Tx) -> ApiResult<Vec<SubscriptionRow>> {
    Ok(subscription::Entity::find()
        .filter(subscription::Column::State.ne(SubscriptionState::Cancelled))
        .order_by_asc(subscription::Column::Id)
        .all(tx)
        .await?)
}

pub async fn list_subscriptions(
    tx: &Tx,
    scope: &Scope,
    tenant_id: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<SubscriptionRow>> {
    let mut q = subscription::Entity::find()
        .filter(owned_by_tenant_in(scope, subscription::Column::TenantId));
    if let Some(t) = tenant_id {
        q = q.filter(subscription::Column::TenantId.eq(t));
    }
    fetch_page(tx, q, subscription::Column::Id, page).await
}

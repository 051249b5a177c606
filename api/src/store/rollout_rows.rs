//! Rows of `instance_rollouts`: a rollout's plan, where it is, and how it
//! ended. Platform-scoped (row-level security shows them to the platform
//! alone); at most one is `running` (a unique partial index).

use chrono::{DateTime, Utc};
use dotmac_schema::RolloutState;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};

use super::entity::instance_rollout::{ActiveModel, Column, Entity, Model};
use super::{fetch_page, insert_unique, Page, PageRequest, Tx};
use crate::error::ApiResult;

pub type RolloutRow = Model;

/// Where a running rollout is, as its runner reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub wave: i32,
    pub waves: i32,
    pub upgraded: i32,
    pub remaining: i32,
}

/// Records a new running rollout; CONFLICT when one is running already.
pub async fn insert(tx: &Tx, row: RolloutRow) -> ApiResult<RolloutRow> {
    insert_unique(
        tx,
        ActiveModel::from(row).reset_all(),
        "version",
        "a rollout is running already: wait for it, or for it to stop",
    )
    .await
}

/// Marks running rollouts whose runner has not reported since
/// `silent_since` as interrupted: the process running them went away.
pub async fn interrupt_silent(
    tx: &Tx,
    silent_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> ApiResult<u64> {
    Ok(Entity::update_many()
        .col_expr(Column::State, Expr::value(RolloutState::Interrupted))
        .col_expr(
            Column::StoppedReason,
            Expr::value("the process running it stopped; start the version again to continue"),
        )
        .col_expr(Column::FinishedAt, Expr::value(Some(now)))
        .filter(Column::State.eq(RolloutState::Running))
        .filter(Column::UpdatedAt.lt(silent_since))
        .exec(tx)
        .await?
        .rows_affected)
}

/// The runner's report: where the rollout is, and that it is alive. A
/// rollout that is no longer running (interrupted meanwhile) is left as it
/// is; the answer says whether it still runs.
pub async fn report(tx: &Tx, id: &str, p: Progress, now: DateTime<Utc>) -> ApiResult<bool> {
    let updated = Entity::update_many()
        .col_expr(Column::Wave, Expr::value(p.wave))
        .col_expr(Column::Waves, Expr::value(p.waves))
        .col_expr(Column::Upgraded, Expr::value(p.upgraded))
        .col_expr(Column::Remaining, Expr::value(p.remaining))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(RolloutState::Running))
        .exec(tx)
        .await?;
    Ok(updated.rows_affected == 1)
}

/// Ends a running rollout as `state` (completed, stopped), with why.
pub async fn finish(
    tx: &Tx,
    id: &str,
    state: RolloutState,
    reason: Option<String>,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    Entity::update_many()
        .col_expr(Column::State, Expr::value(state))
        .col_expr(Column::StoppedReason, Expr::value(reason))
        .col_expr(Column::UpdatedAt, Expr::value(now))
        .col_expr(Column::FinishedAt, Expr::value(Some(now)))
        .filter(Column::Id.eq(id))
        .filter(Column::State.eq(RolloutState::Running))
        .exec(tx)
        .await?;
    Ok(())
}

pub async fn get(tx: &Tx, id: &str) -> ApiResult<Option<RolloutRow>> {
    Ok(Entity::find_by_id(id).one(tx).await?)
}

/// Rollouts, oldest first, a page at a time.
pub async fn list(tx: &Tx, page: PageRequest<'_>) -> ApiResult<Page<RolloutRow>> {
    fetch_page(tx, Entity::find(), Column::Id, page).await
}

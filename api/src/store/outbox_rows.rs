//! The outbox's rows: announcements written in the transaction of the change
//! they announce, claimed by a relay that publishes them and marks them
//! published in its own transaction.

use chrono::{DateTime, TimeDelta, Utc};
use sea_orm::sea_query::{LockBehavior, LockType};
use sea_orm::{ColumnTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use super::entity::outbox;
use super::{Store, Tx};
use crate::error::ApiResult;

/// One announcement, already serialized by its publisher.
#[derive(Debug, Clone)]
pub struct OutboxEntry {
    /// The tenant it is about (row-level security files it there).
    pub tenant_id: Option<String>,
    pub reseller_id: Option<String>,
    /// What kind of event, for an operator reading the table.
    pub kind: &'static str,
    /// The event as it travels on the bus.
    pub event: String,
}

/// Rows per insert statement: well under SQLite's bound on variables.
const INSERT_ROWS: usize = 500;

/// Records `entries` in `tx`: they are published if and only if it commits.
pub async fn record(tx: &Tx, now: DateTime<Utc>, entries: Vec<OutboxEntry>) -> ApiResult<()> {
    let mut rows = entries.into_iter().map(|e| outbox::ActiveModel {
        id: sea_orm::Set(uuid::Uuid::now_v7().to_string()),
        tenant_id: sea_orm::Set(e.tenant_id),
        reseller_id: sea_orm::Set(e.reseller_id),
        kind: sea_orm::Set(e.kind.to_owned()),
        event: sea_orm::Set(e.event),
        created_at: sea_orm::Set(now),
        published_at: sea_orm::Set(None),
    });
    loop {
        let chunk: Vec<outbox::ActiveModel> = rows.by_ref().take(INSERT_ROWS).collect();
        if chunk.is_empty() {
            return Ok(());
        }
        outbox::Entity::insert_many(chunk).exec(tx).await?;
    }
}

/// Up to `limit` waiting announcements, oldest first, claimed in `tx`: on
/// Postgres the rows stay locked until `tx` ends and concurrent relays skip
/// them, so two processes do not publish the same rows at once.
pub async fn claim_waiting(
    tx: &Tx,
    backend: DbBackend,
    limit: u64,
) -> ApiResult<Vec<(String, String)>> {
    let mut q = outbox::Entity::find()
        .select_only()
        .columns([outbox::Column::Id, outbox::Column::Event])
        .filter(outbox::Column::PublishedAt.is_null())
        .order_by_asc(outbox::Column::Id)
        .limit(limit);
    if backend == DbBackend::Postgres {
        q = q.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
    }
    Ok(q.into_tuple().all(tx).await?)
}

/// Marks `ids` published at `now`.
pub async fn mark_published(tx: &Tx, ids: &[String], now: DateTime<Utc>) -> ApiResult<()> {
    for chunk in ids.chunks(INSERT_ROWS) {
        outbox::Entity::update_many()
            .col_expr(
                outbox::Column::PublishedAt,
                sea_orm::sea_query::Expr::value(now),
            )
            .filter(outbox::Column::Id.is_in(chunk.iter().cloned()))
            .exec(tx)
            .await?;
    }
    Ok(())
}

/// Forgets announcements published more than `keep` before `now`.
pub async fn forget_published(
    store: &Store,
    now: DateTime<Utc>,
    keep: TimeDelta,
) -> ApiResult<u64> {
    let tx = store.begin_system().await?;
    let gone = outbox::Entity::delete_many()
        .filter(outbox::Column::PublishedAt.lt(now - keep))
        .exec(&tx)
        .await?
        .rows_affected;
    tx.commit().await?;
    Ok(gone)
}

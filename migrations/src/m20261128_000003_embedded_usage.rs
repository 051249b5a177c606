//! The embedded mode's usage pipeline (`dotmac dev`, SQLite only): the log
//! that stands in for the Kafka topic, the committed offset, the dedupe
//! keys, dead letters and rollup parts. Production keeps these in Kafka and
//! ClickHouse, so Postgres gets nothing here.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000003_embedded_usage"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() != DbBackend::Sqlite {
            return Ok(());
        }
        for sql in [
            "CREATE TABLE usage_log (
                log_offset INTEGER PRIMARY KEY AUTOINCREMENT,
                tenant TEXT NOT NULL,
                payload BLOB NOT NULL,
                received_at_us INTEGER NOT NULL
            )",
            "CREATE TABLE usage_progress (
                id INTEGER PRIMARY KEY CHECK (id = 1),
                last_offset INTEGER NOT NULL
            )",
            "CREATE TABLE usage_dedupe (
                dedupe_key TEXT PRIMARY KEY,
                event_time INTEGER NOT NULL
            )",
            "CREATE TABLE usage_dead_letters (
                log_offset INTEGER PRIMARY KEY,
                tenant TEXT,
                payload BLOB,
                reason TEXT NOT NULL
            )",
            "CREATE TABLE usage_rollup_parts (
                tenant TEXT NOT NULL,
                meter TEXT NOT NULL,
                window_start INTEGER NOT NULL,
                part TEXT NOT NULL
            )",
            "CREATE INDEX usage_rollup_parts_by_meter ON usage_rollup_parts (meter, window_start)",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

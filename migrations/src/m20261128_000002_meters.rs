//! Meter definitions: the platform's catalogue of what is metered. Not
//! tenant-owned (every tenant is metered by the same platform meters), so no
//! row-level security; the app role may read and write it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000002_meters"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let ts = match db.get_database_backend() {
            DbBackend::Postgres => "TIMESTAMPTZ",
            _ => "TEXT",
        };
        db.execute_unprepared(&format!(
            "CREATE TABLE meters (
                id TEXT PRIMARY KEY,
                slug TEXT NOT NULL UNIQUE,
                name TEXT NOT NULL,
                event_type TEXT NOT NULL,
                aggregation TEXT NOT NULL,
                value_path TEXT,
                group_by TEXT NOT NULL,
                window_size TEXT NOT NULL,
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL,
                archived_at {ts}
            )"
        ))
        .await?;
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(
                "DO $$ BEGIN
                   IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'dotmac_app') THEN
                     GRANT SELECT, INSERT, UPDATE ON meters TO dotmac_app;
                   END IF;
                 END $$",
            )
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS meters")
            .await?;
        Ok(())
    }
}

//! Pauses of subscriptions: while paused, recurring fees do not accrue. A
//! close subtracts every pause interval from the span it bills.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000007_subscription_pauses"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        db.execute_unprepared(&format!(
            "CREATE TABLE subscription_pauses (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
                paused_at {ts} NOT NULL,
                resumed_at {ts}
            )"
        ))
        .await?;
        crate::secure(db, &[("subscription_pauses", crate::TENANT_OWNED)]).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS subscription_pauses")
            .await?;
        Ok(())
    }
}

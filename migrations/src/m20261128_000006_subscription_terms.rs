//! Subscription terms beyond the plan: the tenant's tax rate (by its
//! jurisdiction) and a coupon, kept as JSON on the subscription; and the
//! history of plan changes, from which a period close prorates each plan's
//! recurring fee by the time it was in force.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000006_subscription_terms"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        for sql in [
            "ALTER TABLE subscriptions ADD COLUMN tax TEXT".to_owned(),
            "ALTER TABLE subscriptions ADD COLUMN coupon TEXT".to_owned(),
            format!(
                "CREATE TABLE plan_changes (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL REFERENCES tenants(id),
                    subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
                    from_plan_id TEXT NOT NULL REFERENCES plans(id),
                    to_plan_id TEXT NOT NULL REFERENCES plans(id),
                    changed_at {ts} NOT NULL
                )"
            ),
            "CREATE INDEX plan_changes_subscription ON plan_changes (subscription_id, changed_at)"
                .to_owned(),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        crate::secure(db, &[("plan_changes", crate::TENANT_OWNED)]).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS plan_changes")
            .await?;
        Ok(())
    }
}

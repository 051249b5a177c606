//! The outbox (#13.8): every announcement of a tenant's lifecycle and of a
//! finalized invoice is written in the transaction of the change it
//! announces, and a relay in every API process publishes what is not yet
//! published. A process that dies between the commit and the publish loses
//! nothing: the next relay publishes it (at least once).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::{secure, APP_ROLE};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000015_outbox"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        for sql in [
            // `id` is a UUIDv7: the order events were recorded in.
            format!(
                "CREATE TABLE outbox (
                   id TEXT PRIMARY KEY,
                   tenant_id TEXT,
                   reseller_id TEXT,
                   kind TEXT NOT NULL,
                   event TEXT NOT NULL,
                   created_at {ts} NOT NULL,
                   published_at {ts}
                 )"
            ),
            // The relay's one question: what is waiting, oldest first.
            "CREATE INDEX outbox_waiting ON outbox (id) WHERE published_at IS NULL".to_owned(),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        secure(
            db,
            &[(
                "outbox",
                "dotmac_scope_all() OR (tenant_id IS NOT NULL AND dotmac_tenant_visible(tenant_id))",
            )],
        )
        .await?;
        if postgres {
            // The relay forgets what it published a while ago.
            db.execute_unprepared(&format!(
                "DO $$ BEGIN
                   IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                     GRANT DELETE ON outbox TO {APP_ROLE};
                   END IF;
                 END $$"
            ))
            .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS outbox")
            .await?;
        Ok(())
    }
}

//! Taxes by jurisdiction: each tenant may have a tax jurisdiction (ISO 3166
//! code such as `KE` or `US-CA`), and platform admins keep a dated rate per
//! jurisdiction. A close taxes a subscription at its own rate when it has
//! one, else at its tenant's jurisdiction's rate in force.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000008_tax_jurisdictions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        db.execute_unprepared("ALTER TABLE tenants ADD COLUMN tax_jurisdiction TEXT")
            .await?;
        // Rates are the platform's catalogue, not tenant data: no RLS, as
        // for plans; only platform admins reach them through the API.
        db.execute_unprepared(&format!(
            "CREATE TABLE tax_rates (
                id TEXT PRIMARY KEY,
                jurisdiction TEXT NOT NULL,
                name TEXT NOT NULL,
                percent TEXT NOT NULL,
                inclusive BOOLEAN NOT NULL,
                effective_from TEXT NOT NULL,
                created_at {ts} NOT NULL,
                UNIQUE (jurisdiction, effective_from)
            )"
        ))
        .await?;
        crate::grant(db, &["tax_rates"]).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("DROP TABLE IF EXISTS tax_rates")
            .await?;
        db.execute_unprepared("ALTER TABLE tenants DROP COLUMN tax_jurisdiction")
            .await?;
        Ok(())
    }
}

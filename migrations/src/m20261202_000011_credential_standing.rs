//! What a credential needs to follow its tenant and its user: when the
//! tenant's state last changed (a suspended tenant's API keys may still
//! report usage timed before that instant), and each user's token
//! generation (access tokens carry it; signing out or changing the password
//! moves it on, so tokens issued before stop working at once).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000011_credential_standing"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        for sql in [
            format!("ALTER TABLE tenants ADD COLUMN state_changed_at {ts}"),
            // The best knowledge of when an existing tenant entered its state.
            "UPDATE tenants SET state_changed_at = updated_at".to_owned(),
            "ALTER TABLE users ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0".to_owned(),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE users DROP COLUMN token_generation")
            .await?;
        db.execute_unprepared("ALTER TABLE tenants DROP COLUMN state_changed_at")
            .await?;
        Ok(())
    }
}

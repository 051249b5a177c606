//! Rollouts of a framework version across tenants' instances (#14): the
//! plan (version, wave size, pause, wave deadline), where the rollout is
//! (waves done, tenants upgraded and left, why it stopped) and who started
//! it. Platform admins' business alone: the table is visible only in the
//! platform's scope. At most one rollout runs at a time.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::secure;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000017_instance_rollouts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let ts = if db.get_database_backend() == DbBackend::Postgres {
            "TIMESTAMPTZ"
        } else {
            "TEXT"
        };
        for sql in [
            format!(
                "CREATE TABLE instance_rollouts (
                   id TEXT PRIMARY KEY,
                   version TEXT NOT NULL,
                   wave_size INTEGER NOT NULL,
                   pause_secs BIGINT NOT NULL,
                   wave_deadline_secs BIGINT NOT NULL,
                   state TEXT NOT NULL,
                   wave INTEGER NOT NULL DEFAULT 0,
                   waves INTEGER NOT NULL DEFAULT 0,
                   upgraded INTEGER NOT NULL DEFAULT 0,
                   remaining INTEGER NOT NULL DEFAULT 0,
                   stopped_reason TEXT,
                   started_by TEXT NOT NULL,
                   started_at {ts} NOT NULL,
                   updated_at {ts} NOT NULL,
                   finished_at {ts}
                 )"
            ),
            // One running rollout at a time: a second start is a conflict.
            "CREATE UNIQUE INDEX instance_rollouts_one_running ON instance_rollouts (state) \
             WHERE state = 'running'"
                .to_owned(),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        secure(db, &[("instance_rollouts", "dotmac_scope_all()")]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS instance_rollouts")
            .await?;
        Ok(())
    }
}

//! Tenant instances (#14): what the control plane wants of each tenant's
//! instance on the cluster (written in the transaction of the lifecycle
//! change that wants it, with a generation), how far the cluster was told
//! (the sync's generation), and what the cluster last reported (phase and
//! conditions, for GraphQL: operators see why a tenant is not Ready without
//! `kubectl`).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::{secure, TENANT_OWNED};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000016_tenant_instances"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        let boolean = if postgres { "BOOLEAN" } else { "INTEGER" };
        for sql in [
            format!(
                "CREATE TABLE tenant_instances (
                   tenant_id TEXT PRIMARY KEY REFERENCES tenants (id),
                   desired TEXT NOT NULL,
                   desired_generation BIGINT NOT NULL,
                   synced_generation BIGINT NOT NULL DEFAULT 0,
                   delete_requested {boolean} NOT NULL DEFAULT {f},
                   sync_error TEXT,
                   phase TEXT,
                   observed TEXT,
                   observed_at {ts},
                   secrets_rotated_at {ts},
                   updated_at {ts} NOT NULL
                 )",
                f = if postgres { "FALSE" } else { "0" }
            ),
            // The sync's one question: what the cluster was not told yet.
            "CREATE INDEX tenant_instances_unsynced ON tenant_instances (tenant_id) \
             WHERE synced_generation < desired_generation"
                .to_owned(),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        secure(db, &[("tenant_instances", TENANT_OWNED)]).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE IF EXISTS tenant_instances")
            .await?;
        Ok(())
    }
}

//! Plugin licensing (#15): the plugin catalog (plugins, the framework
//! versions each version supports, what each tier adds and costs), tenants'
//! licences (a trial once per tenant and plugin, one live licence per
//! tenant and plugin), their effective-dated tier changes, activations (a
//! seat per instance id, live until deactivated) and the revocation list
//! (a sequence that only rises).
//!
//! The catalog is the platform's and readable by everyone (no row-level
//! security, like plans); licences, tier changes and activations are
//! tenant-owned; the revocation list is written by the platform and read
//! whole by every instance (it names licence ids only).

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

use crate::{grant, secure, APP_ROLE, TENANT_OWNED};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000018_licensing"
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
                "CREATE TABLE plugins (
                   id TEXT PRIMARY KEY,
                   slug TEXT NOT NULL UNIQUE,
                   name TEXT NOT NULL,
                   description TEXT NOT NULL,
                   category TEXT NOT NULL,
                   created_at {ts} NOT NULL,
                   updated_at {ts} NOT NULL
                 )"
            ),
            format!(
                "CREATE TABLE plugin_versions (
                   plugin_id TEXT NOT NULL REFERENCES plugins (id),
                   version TEXT NOT NULL,
                   framework_min TEXT NOT NULL,
                   framework_max TEXT,
                   released_at {ts} NOT NULL,
                   PRIMARY KEY (plugin_id, version)
                 )"
            ),
            "CREATE TABLE plugin_tiers (
               plugin_id TEXT NOT NULL REFERENCES plugins (id),
               tier TEXT NOT NULL,
               features TEXT NOT NULL,
               monthly_fee TEXT NOT NULL,
               currency TEXT NOT NULL,
               usage_meter TEXT,
               usage_unit_price TEXT,
               PRIMARY KEY (plugin_id, tier)
             )"
            .to_owned(),
            format!(
                "CREATE TABLE licences (
                   id TEXT PRIMARY KEY,
                   tenant_id TEXT NOT NULL REFERENCES tenants (id),
                   plugin_id TEXT NOT NULL REFERENCES plugins (id),
                   tier TEXT NOT NULL,
                   kind TEXT NOT NULL,
                   state TEXT NOT NULL,
                   activation_limit INTEGER NOT NULL,
                   starts_at {ts} NOT NULL,
                   ends_at {ts},
                   created_at {ts} NOT NULL,
                   updated_at {ts} NOT NULL
                 )"
            ),
            // A trial once per tenant and plugin, ever.
            "CREATE UNIQUE INDEX licences_one_trial ON licences (tenant_id, plugin_id) \
             WHERE kind = 'trial'"
                .to_owned(),
            // One live licence per tenant and plugin.
            "CREATE UNIQUE INDEX licences_one_active ON licences (tenant_id, plugin_id) \
             WHERE state = 'active'"
                .to_owned(),
            format!(
                "CREATE TABLE licence_tier_changes (
                   id TEXT PRIMARY KEY,
                   licence_id TEXT NOT NULL REFERENCES licences (id),
                   tenant_id TEXT NOT NULL REFERENCES tenants (id),
                   from_tier TEXT NOT NULL,
                   to_tier TEXT NOT NULL,
                   effective_at {ts} NOT NULL,
                   created_at {ts} NOT NULL
                 )"
            ),
            format!(
                "CREATE TABLE licence_activations (
                   id TEXT PRIMARY KEY,
                   licence_id TEXT NOT NULL REFERENCES licences (id),
                   tenant_id TEXT NOT NULL REFERENCES tenants (id),
                   instance_id TEXT NOT NULL,
                   activated_at {ts} NOT NULL,
                   deactivated_at {ts}
                 )"
            ),
            // An instance holds at most one seat of a licence.
            "CREATE UNIQUE INDEX licence_activations_live ON licence_activations \
             (licence_id, instance_id) WHERE deactivated_at IS NULL"
                .to_owned(),
            format!(
                "CREATE TABLE licence_revocations (
                   sequence BIGINT PRIMARY KEY,
                   licence_id TEXT NOT NULL UNIQUE REFERENCES licences (id),
                   tenant_id TEXT NOT NULL REFERENCES tenants (id),
                   reason TEXT NOT NULL,
                   revoked_at {ts} NOT NULL
                 )"
            ),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        grant(db, &["plugins", "plugin_versions", "plugin_tiers"]).await?;
        if db.get_database_backend() == DbBackend::Postgres {
            // A plugin's tiers and versions are replaced whole when it is
            // updated: the app deletes the old rows (nothing else is ever
            // deleted by the app role).
            db.execute_unprepared(&format!(
                "DO $$ BEGIN
                   IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
                     GRANT DELETE ON plugin_versions, plugin_tiers TO {APP_ROLE};
                   END IF;
                 END $$"
            ))
            .await?;
        }
        secure(
            db,
            &[
                ("licences", TENANT_OWNED),
                ("licence_tier_changes", TENANT_OWNED),
                ("licence_activations", TENANT_OWNED),
                ("licence_revocations", "dotmac_scope_all()"),
            ],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "licence_revocations",
            "licence_activations",
            "licence_tier_changes",
            "licences",
            "plugin_tiers",
            "plugin_versions",
            "plugins",
        ] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }
}

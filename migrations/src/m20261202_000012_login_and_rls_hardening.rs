//! Sign-in failures are counted per (account, client) instead of per
//! account, so that a stranger's guesses lock out the stranger's client and
//! not the account's owner (`login_attempts`, with exponential backoff);
//! the per-account columns go. On Postgres, row-level security is
//! hardened: the predicate functions that read a table pin their
//! `search_path` (a temporary table named `tenants` cannot stand in for the
//! real one), and `plans`, which can hold a tenant's negotiated prices,
//! get a policy: visible to the platform, or to a scope holding a
//! subscription (or plan change) on them.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000012_login_and_rls_hardening"
    }
}

/// The functions of the policies that read a table, and their arguments.
/// (`dotmac_scope_all` and `dotmac_reseller_visible` read no table; pinning
/// them would stop the planner inlining them into every policy.)
const TABLE_READING_FUNCTIONS: [&str; 3] = [
    "dotmac_tenant_visible(text)",
    "dotmac_tenant_row_visible(text, text)",
    "dotmac_append_only()",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        db.execute_unprepared(&format!(
            "CREATE TABLE login_attempts (
                user_id TEXT NOT NULL REFERENCES users(id),
                client TEXT NOT NULL,
                failures INTEGER NOT NULL,
                locks INTEGER NOT NULL,
                locked_until {ts},
                PRIMARY KEY (user_id, client)
            )"
        ))
        .await?;
        for sql in [
            "ALTER TABLE users DROP COLUMN failed_logins",
            "ALTER TABLE users DROP COLUMN locked_until",
        ] {
            db.execute_unprepared(sql).await?;
        }
        // Read and written by the authentication path only (the `all` scope).
        crate::secure(db, &[("login_attempts", "dotmac_scope_all()")]).await?;
        if !postgres {
            return Ok(());
        }
        for f in TABLE_READING_FUNCTIONS {
            db.execute_unprepared(&format!(
                "ALTER FUNCTION {f} SET search_path = pg_catalog, public, pg_temp"
            ))
            .await?;
        }
        for sql in [
            "ALTER TABLE plans ENABLE ROW LEVEL SECURITY",
            "CREATE POLICY scoped ON plans USING (
                dotmac_scope_all()
                OR EXISTS (SELECT 1 FROM subscriptions s
                           WHERE s.plan_id = plans.id AND dotmac_tenant_visible(s.tenant_id))
                OR EXISTS (SELECT 1 FROM plan_changes c
                           WHERE (c.from_plan_id = plans.id OR c.to_plan_id = plans.id)
                             AND dotmac_tenant_visible(c.tenant_id)))",
            "ALTER TABLE plans FORCE ROW LEVEL SECURITY",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        if postgres {
            for sql in [
                "DROP POLICY IF EXISTS scoped ON plans",
                "ALTER TABLE plans NO FORCE ROW LEVEL SECURITY",
                "ALTER TABLE plans DISABLE ROW LEVEL SECURITY",
            ] {
                db.execute_unprepared(sql).await?;
            }
            for f in TABLE_READING_FUNCTIONS {
                db.execute_unprepared(&format!("ALTER FUNCTION {f} RESET search_path"))
                    .await?;
            }
        }
        db.execute_unprepared("DROP TABLE IF EXISTS login_attempts")
            .await?;
        db.execute_unprepared(
            "ALTER TABLE users ADD COLUMN failed_logins INTEGER NOT NULL DEFAULT 0",
        )
        .await?;
        db.execute_unprepared(&format!("ALTER TABLE users ADD COLUMN locked_until {ts}"))
            .await?;
        Ok(())
    }
}

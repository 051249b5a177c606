//! Relational schema of the platform for Postgres and SQLite, applied by
//! `dotmac migrate` (and automatically by `dotmac dev`).
//!
//! Postgres additionally gets row-level security on every tenant-owned table:
//! the app enters its scope per transaction through `dotmac_enter_scope`
//! (which sets `dotmac.scope`, `dotmac.tenant_id`, `dotmac.reseller_id` and a
//! proof of them under the session's key) and connects as the non-superuser
//! role [`APP_ROLE`], so a query that forgets its scope filter still sees
//! nothing, and SQL run as the app role cannot widen its scope by setting
//! the variables itself.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_foundation;
mod m20261128_000002_meters;
mod m20261128_000003_embedded_usage;
mod m20261128_000004_billing;
mod m20261128_000005_settlement;
mod m20261128_000006_subscription_terms;
mod m20261128_000007_subscription_pauses;
mod m20261128_000008_tax_jurisdictions;
mod m20261128_000009_invoice_writes;
mod m20261128_000010_rls_predicate_cost;
mod m20261202_000011_credential_standing;
mod m20261202_000012_login_and_rls_hardening;
mod m20261202_000013_proven_scope;
mod m20261202_000014_billing_correctness;
mod m20261202_000015_outbox;
mod m20261202_000016_tenant_instances;
mod m20261202_000017_instance_rollouts;
mod m20261202_000018_licensing;

/// The Postgres role the application connects as; the migration grants it
/// table privileges when it exists (see the README for provisioning it).
pub const APP_ROLE: &str = "dotmac_app";

/// Row-level security on Postgres for the billing tables: each table gets
/// the `scoped` policy with its predicate (`dotmac_tenant_visible(tenant_id)`
/// for tenant-owned ones), forced even for the owner, and the app role may
/// read, insert and update it. A no-op on SQLite.
async fn secure<C: sea_orm_migration::sea_orm::ConnectionTrait>(
    db: &C,
    tables: &[(&str, &str)],
) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm_migration::sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    for (table, predicate) in tables {
        for sql in [
            format!("ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"),
            format!("CREATE POLICY scoped ON {table} USING ({predicate})"),
            format!("ALTER TABLE {table} FORCE ROW LEVEL SECURITY"),
            // Tables created after `dotmac_scope_proven` exists (migration
            // 000013) get its restrictive policy too; earlier ones got it
            // from that migration.
            format!(
                "DO $$ BEGIN
                   IF to_regprocedure('dotmac_scope_proven()') IS NOT NULL THEN
                     CREATE POLICY proven ON {table} AS RESTRICTIVE USING ((SELECT dotmac_scope_proven()));
                   END IF;
                 END $$"
            ),
        ] {
            db.execute_unprepared(&sql).await?;
        }
    }
    grant(db, &tables.iter().map(|(t, _)| *t).collect::<Vec<_>>()).await
}

/// Grants the app role read, insert and update on `tables` when it exists.
async fn grant<C: sea_orm_migration::sea_orm::ConnectionTrait>(
    db: &C,
    tables: &[&str],
) -> Result<(), DbErr> {
    if db.get_database_backend() != sea_orm_migration::sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    db.execute_unprepared(&format!(
        "DO $$ BEGIN
           IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
             GRANT SELECT, INSERT, UPDATE ON {} TO {APP_ROLE};
           END IF;
         END $$",
        tables.join(", ")
    ))
    .await?;
    Ok(())
}

/// The predicate of tenant-owned tables.
const TENANT_OWNED: &str = "dotmac_tenant_visible(tenant_id)";

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_foundation::Migration),
            Box::new(m20261128_000002_meters::Migration),
            Box::new(m20261128_000003_embedded_usage::Migration),
            Box::new(m20261128_000004_billing::Migration),
            Box::new(m20261128_000005_settlement::Migration),
            Box::new(m20261128_000006_subscription_terms::Migration),
            Box::new(m20261128_000007_subscription_pauses::Migration),
            Box::new(m20261128_000008_tax_jurisdictions::Migration),
            Box::new(m20261128_000009_invoice_writes::Migration),
            Box::new(m20261128_000010_rls_predicate_cost::Migration),
            Box::new(m20261202_000011_credential_standing::Migration),
            Box::new(m20261202_000012_login_and_rls_hardening::Migration),
            Box::new(m20261202_000013_proven_scope::Migration),
            Box::new(m20261202_000014_billing_correctness::Migration),
            Box::new(m20261202_000015_outbox::Migration),
            Box::new(m20261202_000016_tenant_instances::Migration),
            Box::new(m20261202_000017_instance_rollouts::Migration),
            Box::new(m20261202_000018_licensing::Migration),
        ]
    }
}

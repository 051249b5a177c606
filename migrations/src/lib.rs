//! Relational schema of the platform for Postgres and SQLite, applied by
//! `dotmac migrate` (and automatically by `dotmac dev`).
//!
//! Postgres additionally gets row-level security on every tenant-owned table
//! (DESIGN.md §5): the app sets `dotmac.scope`, `dotmac.tenant_id` and
//! `dotmac.reseller_id` per transaction and connects as the non-superuser role
//! [`APP_ROLE`], so a query that forgets its scope filter still sees nothing.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_foundation;
mod m20261128_000002_meters;
mod m20261128_000003_embedded_usage;
mod m20261128_000004_billing;
mod m20261128_000005_settlement;
mod m20261128_000006_subscription_terms;
mod m20261128_000007_subscription_pauses;

/// The Postgres role the application connects as; the migration grants it
/// table privileges when it exists (see the README for provisioning it).
pub const APP_ROLE: &str = "dotmac_app";

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
        ]
    }
}

//! Billing: plan versions (the platform's catalogue, like meters: no
//! row-level security), subscriptions and invoices (tenant-owned: RLS by
//! tenant, which also lets a reseller see its tenants'), and the per-issuer
//! invoice number sequence that finalization draws from in its own
//! transaction, so numbers are gapless.
//!
//! Money is stored as exact decimal text; an invoice's lines as JSON.
//! `UNIQUE (subscription_id, period_start)` is what makes a period close
//! idempotent: two closes of one period meet on that row.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000004_billing"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        let statements = [
            format!(
                "CREATE TABLE plans (
                    id TEXT PRIMARY KEY,
                    slug TEXT NOT NULL,
                    version INTEGER NOT NULL,
                    name TEXT NOT NULL,
                    currency TEXT NOT NULL,
                    billing_interval TEXT NOT NULL,
                    trial_days INTEGER NOT NULL,
                    prices TEXT NOT NULL,
                    created_at {ts} NOT NULL,
                    UNIQUE (slug, version)
                )"
            ),
            format!(
                "CREATE TABLE subscriptions (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL REFERENCES tenants(id),
                    plan_id TEXT NOT NULL REFERENCES plans(id),
                    state TEXT NOT NULL,
                    anchor_date TEXT NOT NULL,
                    trial_ends_at {ts},
                    cancel_at_period_end BOOLEAN NOT NULL DEFAULT FALSE,
                    cancelled_at {ts},
                    created_at {ts} NOT NULL,
                    updated_at {ts} NOT NULL
                )"
            ),
            // One live subscription per tenant.
            "CREATE UNIQUE INDEX subscriptions_one_live ON subscriptions (tenant_id)
                WHERE state <> 'cancelled'"
                .to_owned(),
            format!(
                "CREATE TABLE invoices (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL REFERENCES tenants(id),
                    subscription_id TEXT NOT NULL REFERENCES subscriptions(id),
                    period_start TEXT NOT NULL,
                    period_end TEXT NOT NULL,
                    status TEXT NOT NULL,
                    currency TEXT NOT NULL,
                    issuer TEXT NOT NULL,
                    number TEXT,
                    subtotal TEXT NOT NULL,
                    discount TEXT NOT NULL,
                    tax TEXT NOT NULL,
                    total TEXT NOT NULL,
                    amount_due TEXT NOT NULL,
                    lines TEXT NOT NULL,
                    finalized_at {ts},
                    due_at {ts},
                    created_at {ts} NOT NULL,
                    updated_at {ts} NOT NULL,
                    UNIQUE (subscription_id, period_start),
                    UNIQUE (issuer, number)
                )"
            ),
            "CREATE INDEX invoices_tenant ON invoices (tenant_id, period_start)".to_owned(),
            "CREATE TABLE invoice_sequences (
                issuer TEXT PRIMARY KEY,
                next_number BIGINT NOT NULL
            )"
            .to_owned(),
        ];
        for sql in statements {
            db.execute_unprepared(&sql).await?;
        }
        crate::grant(db, &["plans"]).await?;
        crate::secure(
            db,
            &[
                ("subscriptions", crate::TENANT_OWNED),
                ("invoices", crate::TENANT_OWNED),
                // Numbers are drawn only in the system scope.
                ("invoice_sequences", "dotmac_scope_all()"),
            ],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["invoice_sequences", "invoices", "subscriptions", "plans"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }
}

//! Settlement of finalized invoices: credit notes (per line, with the tax
//! they reverse), payments (manual or from the signed webhook, unique by
//! reference so a redelivered webhook counts once), and each tenant's credit
//! balance (overpayments and credit beyond what an invoice still asked).
//! An invoice row carries its running totals (`paid`, `credited`,
//! `credit_applied`) so its balance is one read.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261128_000005_settlement"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        let statements = [
            "ALTER TABLE invoices ADD COLUMN paid TEXT NOT NULL DEFAULT '0'".to_owned(),
            "ALTER TABLE invoices ADD COLUMN credited TEXT NOT NULL DEFAULT '0'".to_owned(),
            "ALTER TABLE invoices ADD COLUMN credit_applied TEXT NOT NULL DEFAULT '0'".to_owned(),
            "ALTER TABLE invoices ADD COLUMN status_reason TEXT".to_owned(),
            format!(
                "CREATE TABLE credit_notes (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL REFERENCES tenants(id),
                    invoice_id TEXT NOT NULL REFERENCES invoices(id),
                    number TEXT NOT NULL UNIQUE,
                    reason TEXT NOT NULL,
                    lines TEXT NOT NULL,
                    total TEXT NOT NULL,
                    to_credit_balance TEXT NOT NULL,
                    created_at {ts} NOT NULL
                )"
            ),
            "CREATE INDEX credit_notes_invoice ON credit_notes (invoice_id)".to_owned(),
            format!(
                "CREATE TABLE payments (
                    id TEXT PRIMARY KEY,
                    tenant_id TEXT NOT NULL REFERENCES tenants(id),
                    invoice_id TEXT NOT NULL REFERENCES invoices(id),
                    amount TEXT NOT NULL,
                    currency TEXT NOT NULL,
                    method TEXT NOT NULL,
                    reference TEXT NOT NULL UNIQUE,
                    to_invoice TEXT NOT NULL,
                    to_credit_balance TEXT NOT NULL,
                    received_at {ts} NOT NULL
                )"
            ),
            "CREATE INDEX payments_invoice ON payments (invoice_id)".to_owned(),
            "CREATE TABLE credit_balances (
                tenant_id TEXT NOT NULL REFERENCES tenants(id),
                currency TEXT NOT NULL,
                balance TEXT NOT NULL,
                PRIMARY KEY (tenant_id, currency)
            )"
            .to_owned(),
        ];
        for sql in statements {
            db.execute_unprepared(&sql).await?;
        }
        crate::secure(
            db,
            &[
                ("credit_notes", crate::TENANT_OWNED),
                ("payments", crate::TENANT_OWNED),
                ("credit_balances", crate::TENANT_OWNED),
            ],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in ["credit_balances", "payments", "credit_notes"] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }
}

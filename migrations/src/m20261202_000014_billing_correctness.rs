//! Billing rules a tenant or an operator could once get around (#13):
//!
//! - `meters.allow_negative`: a meter takes negative values only when it
//!   says so (default no), so a tenant's own key cannot lower its bill.
//! - `subscriptions.cancels_at`: a cancellation at period end is dated, at
//!   the request, to the end of the period it was asked in; whichever close
//!   runs, it ends there and no earlier.
//! - `subscriptions.covers_from`: the instant a subscription starts to
//!   cover (its anchor, 00:00 UTC). No two subscriptions of a tenant may
//!   cover the same instant, from `covers_from` to its cancellation (open
//!   while live): an exclusion constraint on Postgres, triggers on SQLite.
//!   A backdated subscription over periods another already billed is
//!   refused instead of billing them twice.
//! - `invoices.credit_issued`: what a negative total gave the tenant as
//!   credit, applied to its next invoice.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261202_000014_billing_correctness"
    }
}

/// Two subscriptions of one tenant that cover a common instant, in SQLite's
/// terms (`NEW` against every other row). A cancellation at or before the
/// start covers nothing.
const SQLITE_OVERLAP: &str = "EXISTS (SELECT 1 FROM subscriptions o
      WHERE o.tenant_id = NEW.tenant_id AND o.id <> NEW.id
        AND (o.cancelled_at IS NULL OR o.cancelled_at > o.covers_from)
        AND (NEW.cancelled_at IS NULL OR NEW.cancelled_at > NEW.covers_from)
        AND NEW.covers_from < coalesce(o.cancelled_at, '9999')
        AND o.covers_from < coalesce(NEW.cancelled_at, '9999'))";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        let ts = if postgres { "TIMESTAMPTZ" } else { "TEXT" };
        let from_anchor = if postgres {
            "(anchor_date || 'T00:00:00Z')::timestamptz"
        } else {
            // The text form sea-orm writes for a UTC instant on SQLite
            // (RFC 3339), which orders as the instants do.
            "anchor_date || 'T00:00:00+00:00'"
        };
        for sql in [
            "ALTER TABLE meters ADD COLUMN allow_negative BOOLEAN NOT NULL DEFAULT FALSE"
                .to_owned(),
            "ALTER TABLE invoices ADD COLUMN credit_issued TEXT NOT NULL DEFAULT '0'".to_owned(),
            format!("ALTER TABLE subscriptions ADD COLUMN cancels_at {ts}"),
            format!("ALTER TABLE subscriptions ADD COLUMN covers_from {ts}"),
            format!("UPDATE subscriptions SET covers_from = {from_anchor}"),
        ] {
            db.execute_unprepared(&sql).await?;
        }
        if postgres {
            for sql in [
                "ALTER TABLE subscriptions ALTER COLUMN covers_from SET NOT NULL",
                "CREATE EXTENSION IF NOT EXISTS btree_gist",
                "ALTER TABLE subscriptions ADD CONSTRAINT subscriptions_no_overlap
                   EXCLUDE USING gist (tenant_id WITH =,
                     tstzrange(covers_from,
                       CASE WHEN cancelled_at IS NULL THEN NULL
                            ELSE greatest(covers_from, cancelled_at) END, '[)') WITH &&)",
            ] {
                db.execute_unprepared(sql).await?;
            }
        } else {
            for event in ["INSERT", "UPDATE"] {
                db.execute_unprepared(&format!(
                    "CREATE TRIGGER subscriptions_no_overlap_{} BEFORE {event} ON subscriptions
                     WHEN NEW.covers_from IS NULL OR {SQLITE_OVERLAP}
                     BEGIN SELECT RAISE(ABORT, 'subscriptions_no_overlap'); END",
                    event.to_lowercase()
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        let postgres = db.get_database_backend() == DbBackend::Postgres;
        if postgres {
            db.execute_unprepared(
                "ALTER TABLE subscriptions DROP CONSTRAINT IF EXISTS subscriptions_no_overlap",
            )
            .await?;
        } else {
            for t in ["insert", "update"] {
                db.execute_unprepared(&format!(
                    "DROP TRIGGER IF EXISTS subscriptions_no_overlap_{t}"
                ))
                .await?;
            }
        }
        for sql in [
            "ALTER TABLE subscriptions DROP COLUMN covers_from",
            "ALTER TABLE subscriptions DROP COLUMN cancels_at",
            "ALTER TABLE invoices DROP COLUMN credit_issued",
            "ALTER TABLE meters DROP COLUMN allow_negative",
        ] {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

//! Announcing finalized invoices (`invoiceFinalized`): recorded in the
//! outbox in the transaction that finalizes them, so an invoice is announced
//! if and only if it is final, even when the process dies right after.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::bus::{BusEvent, InvoiceFinalized};
use crate::store::billing_rows::FinalizedInvoice;

/// The announcements of a chunk's finalized invoices.
pub(super) fn announcements(
    now: DateTime<Utc>,
    finalized: &[FinalizedInvoice],
    resellers: &HashMap<String, Option<String>>,
) -> Vec<BusEvent> {
    finalized
        .iter()
        .map(|row| {
            tracing::info!(invoice = %row.id, number = %row.number, tenant = %row.tenant_id, "invoice finalized");
            BusEvent::Invoice(InvoiceFinalized {
                reseller_id: resellers.get(&row.tenant_id).cloned().flatten(),
                invoice_id: row.id.clone(),
                tenant_id: row.tenant_id.clone(),
                number: row.number.clone(),
                total: row.total.clone(),
                currency: row.currency.clone(),
                finalized_at: now,
            })
        })
        .collect()
}

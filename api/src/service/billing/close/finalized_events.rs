//! Announcing finalized invoices on the bus (`invoiceFinalized`), after
//! their chunk committed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use crate::service::billing::Billing;
use crate::store::billing_rows::FinalizedInvoice;

/// Publishes `invoiceFinalized` for a committed chunk. The invoices are
/// final whatever the bus does: a subscriber may miss an event, never see
/// one for an invoice that is not.
pub(super) async fn announce(
    billing: &Billing,
    now: DateTime<Utc>,
    finalized: Vec<FinalizedInvoice>,
    resellers: &HashMap<String, Option<String>>,
) {
    use crate::bus::{BusEvent, InvoiceFinalized};
    let events: Vec<BusEvent> = finalized
        .into_iter()
        .map(|row| {
            tracing::info!(invoice = %row.id, number = %row.number, tenant = %row.tenant_id, "invoice finalized");
            BusEvent::Invoice(InvoiceFinalized {
                reseller_id: resellers.get(&row.tenant_id).cloned().flatten(),
                invoice_id: row.id,
                tenant_id: row.tenant_id,
                number: row.number,
                total: row.total,
                currency: row.currency,
                finalized_at: now,
            })
        })
        .collect();
    if let Err(e) = billing.bus.publish_all(&events).await {
        tracing::warn!(error = %e, count = events.len(), "invoiceFinalized not published");
    }
}

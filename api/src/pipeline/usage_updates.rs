//! Live usage updates: after a flush commits, one event per (tenant, meter)
//! it touched goes on the bus the API processes listen to.

use std::sync::Arc;

use dotmac_aggregator::{FlushHook, FlushSummary};

use super::catalog::StoreCatalog;
use crate::bus::{BusEvent, EventBus, UsageUpdate};

/// The aggregator's flush hook in `dotmac aggregate`: one usage update per
/// (tenant, meter) a flush committed, on the bus the API processes listen to.
pub fn publish_usage_updates(bus: Arc<dyn EventBus>, catalog: Arc<StoreCatalog>) -> FlushHook {
    let handle = tokio::runtime::Handle::current();
    Arc::new(move |summary: &FlushSummary| {
        let updates: Vec<BusEvent> = summary
            .touched
            .iter()
            .map(|(tenant, meter)| {
                BusEvent::Usage(UsageUpdate {
                    tenant_id: tenant.clone(),
                    reseller_id: catalog.reseller_of(tenant),
                    meter: meter.clone(),
                    committed_at: summary.committed_at,
                })
            })
            .collect();
        let bus = bus.clone();
        // Live updates are best effort: the numbers are committed already.
        handle.spawn(async move {
            for u in updates {
                if let Err(e) = bus.publish(&u).await {
                    tracing::warn!(error = %e, "publishing a usage update");
                }
            }
        });
    })
}

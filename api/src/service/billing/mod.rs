//! Billing: plans and subscriptions, tax rates, the period close that turns
//! committed usage into invoices, settlement (credit notes, payments, void),
//! dunning, reconciliation, and billing on a schedule.

pub mod close;
pub mod documents;
pub mod dunning;
pub mod periods;
pub mod plans;
pub mod reconcile;
pub mod schedule;
pub mod settlement;
pub mod subscriptions;
pub mod taxes;

use std::sync::Arc;

use dotmac_schema::SharedClock;

use super::directory::Directory;
use crate::config::BillingConfig;
use crate::outbox::Outbox;
use crate::pipeline::UsageReader;
use crate::store::Store;

/// What billing's use cases need.
#[derive(Clone)]
pub struct Billing {
    pub store: Store,
    pub clock: SharedClock,
    /// Finalized invoices are recorded here, in their chunk's transaction.
    pub outbox: Arc<Outbox>,
    /// Committed usage (ClickHouse, or the embedded store).
    pub usage: Arc<dyn UsageReader>,
    /// Dunning suspends and reactivates tenants through their lifecycle.
    pub directory: Directory,
    pub settings: BillingConfig,
}

//! What is measured: meter definitions, and committed usage read back per
//! tenant, window and group.

pub mod meters;
pub mod usage;

use std::sync::Arc;

use dotmac_schema::SharedClock;

use crate::pipeline::UsageReader;
use crate::store::Store;

/// What metering's use cases need.
#[derive(Clone)]
pub struct Metering {
    pub store: Store,
    pub clock: SharedClock,
    /// Committed usage (ClickHouse, or the embedded store).
    pub usage: Arc<dyn UsageReader>,
}

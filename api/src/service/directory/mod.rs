//! Who is on the platform: tenants (onboarding, their lifecycle, announced
//! on the bus) and resellers.

pub mod resellers;
pub mod tenants;

use std::sync::Arc;

use dotmac_schema::SharedClock;

use crate::bus::EventBus;
use crate::store::Store;

/// What the directory's use cases need.
#[derive(Clone)]
pub struct Directory {
    pub store: Store,
    pub clock: SharedClock,
    /// Tenant lifecycle changes are announced here.
    pub bus: Arc<dyn EventBus>,
}

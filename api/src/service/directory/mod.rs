//! Who is on the platform: tenants (onboarding, their lifecycle, announced
//! through the outbox) and resellers.

pub mod instance_watch;
pub mod instances;
pub mod resellers;
pub mod rollout;
pub mod tenants;

use std::sync::Arc;

use dotmac_schema::SharedClock;

use crate::outbox::Outbox;
use crate::service::identity::standing::StandingCache;
use crate::store::Store;

/// What the directory's use cases need.
#[derive(Clone)]
pub struct Directory {
    pub store: Store,
    pub clock: SharedClock,
    /// Tenant lifecycle changes are recorded here, in their transaction.
    pub outbox: Arc<Outbox>,
    /// Credentials' view of tenant states: forgotten on every change, so
    /// that a suspension or cancellation binds this process's next request.
    pub standing: Arc<StandingCache>,
    /// The cluster tenants' instances run on; `None` when no target is
    /// configured (provisioning is then finished by an operator).
    pub orchestration: Option<Arc<instances::Orchestration>>,
}

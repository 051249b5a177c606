//! Pure domain types and contracts of the DotMac platform (no I/O): typed ids,
//! tenant lifecycle, slugs, resource tiers, roles and authorization scopes,
//! the usage contracts (events, meters, rollups and their merge law), and
//! money and prices.

pub mod auth;
pub mod clock;
pub mod dates;
pub mod ids;
pub mod lifecycle;
pub mod money;
pub mod plugin;
pub mod price;
pub mod slug;
pub mod tenant;
pub mod tier;
pub mod usage;

pub use auth::{ApiKeyScope, Principal, PrincipalKind, Role, Scope};
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use ids::{
    ActivationId, ApiKeyId, AuditId, IdError, InvitationId, InvoiceId, LicenceChangeId, LicenceId,
    MeterId, PlanId, PluginId, ResellerId, RolloutId, SubscriptionId, TaxRateId, TenantId, UserId,
};
pub use lifecycle::{
    InvoiceStatus, PaymentMethod, RolloutState, SubscriptionEvent, SubscriptionState,
};
pub use money::{Currency, MoneyError, Rounding};
pub use plugin::{LicenceKind, LicenceState, PluginTier};
pub use slug::{slug_from_name, validate_slug, SlugError};
pub use tenant::{TenantAction, TenantState, TransitionError};
pub use tier::{ResellerTier, ResourceTier};

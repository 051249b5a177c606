//! Credentials and who holds them: sign-in with lockout, rotating refresh
//! tokens, users and invitations, and tenants' API keys with the check that
//! turns one into a principal.

pub mod api_keys;
pub mod key_cache;
pub mod sessions;
pub mod standing;
pub mod ttl_map;
pub mod users;

use std::sync::Arc;

use dotmac_schema::{Scope, SharedClock};

use crate::auth::TokenKeys;
use crate::config::AuthConfig;
use crate::limiter::RateLimiter;
use crate::store::Store;
use key_cache::KeyCache;
use standing::StandingCache;

/// What identity's use cases need.
#[derive(Clone)]
pub struct Identity {
    pub store: Store,
    pub clock: SharedClock,
    /// Signs and checks access tokens.
    pub keys: TokenKeys,
    /// Login attempts per client address.
    pub limiter: Arc<dyn RateLimiter>,
    /// API keys verified in the last few seconds.
    pub key_cache: Arc<KeyCache>,
    /// Tenant states and token generations read in the last few seconds;
    /// shared with the directory, which forgets a tenant it changes.
    pub standing: Arc<StandingCache>,
    pub settings: AuthConfig,
    /// Login attempts allowed per client address and minute.
    pub login_per_minute: u32,
}

/// The tenant an audit record of `scope` is filed under.
pub fn scope_tenant(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Tenant(t) => Some(t.to_string()),
        _ => None,
    }
}

/// The reseller an audit record of `scope` is filed under.
pub fn scope_reseller(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Reseller(r) => Some(r.to_string()),
        _ => None,
    }
}

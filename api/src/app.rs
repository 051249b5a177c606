//! Application state shared by every request, and the per-request context
//! (who is asking, in which scope, under which request id).

use std::net::IpAddr;
use std::sync::Arc;

use dotmac_schema::{Principal, Role, SharedClock};

use crate::auth::TokenKeys;
use crate::config::Config;
use crate::error::{ApiError, ApiResult};
use crate::events::EventBus;
use crate::ratelimit::RateLimiter;
use crate::store::Store;

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct App {
    pub store: Store,
    /// Where every use case reads "now" (the wall clock in production).
    pub clock: SharedClock,
    pub bus: Arc<dyn EventBus>,
    pub limiter: Arc<dyn RateLimiter>,
    pub keys: TokenKeys,
    pub config: Arc<Config>,
    /// The usage intake's producer; `None` when no broker is configured.
    pub intake: Option<Arc<crate::usage::Intake>>,
    /// Committed usage in ClickHouse; `None` when the pipeline is not configured.
    pub usage: Option<dotmac_ingest::store::UsageStore>,
    /// `dotmac dev`'s in-process usage pipeline (instead of `usage`).
    pub embedded_usage: Option<Arc<crate::embedded_usage::EmbeddedUsage>>,
    /// API keys verified in the last few seconds.
    pub key_cache: Arc<crate::key_cache::KeyCache>,
}

/// The caller of one request, resolved once from its credential.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    pub principal: Option<Principal>,
    /// When the caller's access token expires; long-lived subscriptions end then.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
}

impl RequestCtx {
    /// The authenticated principal, or UNAUTHENTICATED.
    pub fn principal(&self) -> ApiResult<&Principal> {
        self.principal
            .as_ref()
            .ok_or_else(|| ApiError::Unauthenticated("sign in first".into()))
    }

    /// A principal allowed to mutate; read-only roles get FORBIDDEN.
    pub fn writer(&self) -> ApiResult<&Principal> {
        let p = self.principal()?;
        if !p.can_write() {
            return Err(ApiError::Forbidden("this role is read-only".into()));
        }
        Ok(p)
    }

    /// A writer whose role is one of `roles`.
    pub fn writer_with(&self, roles: &[Role]) -> ApiResult<&Principal> {
        let p = self.writer()?;
        match p.role() {
            Some(r) if roles.contains(&r) => Ok(p),
            _ => Err(ApiError::Forbidden("this role may not do that".into())),
        }
    }
}

//! The caller of one request (who is asking, in which scope, under which
//! request id), resolved once by the transport, and the principal that
//! scheduled jobs act as.

use std::net::IpAddr;

use dotmac_schema::{Principal, Role};

use crate::error::{ApiError, ApiResult};

/// What the caller's tenant lets its credentials do, by the tenant's state
/// (a cancelled or deprovisioned tenant's credentials never get this far).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Everything the role allows.
    #[default]
    Full,
    /// The tenant is suspended since `since`: its users read (invoices,
    /// usage) and manage their own sign-in; its API keys only report usage
    /// timed before `since`.
    Suspended {
        since: chrono::DateTime<chrono::Utc>,
    },
}

/// The caller of one request, resolved once from its credential.
#[derive(Debug, Clone, Default)]
pub struct RequestCtx {
    pub principal: Option<Principal>,
    /// What the caller's tenant allows; `Full` outside a tenant.
    pub access: Access,
    /// When the caller's access token expires; long-lived subscriptions end then.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    pub request_id: Option<String>,
    pub client_ip: Option<IpAddr>,
}

impl RequestCtx {
    /// The platform itself running `job` (a schedule, a CLI command, the
    /// demo seed): platform-wide, audited as `system:<job>` under the
    /// request id `system:<job>`, which no caller's `x-request-id` can take.
    pub fn system(job: &'static str) -> RequestCtx {
        RequestCtx {
            principal: Some(Principal::system(job)),
            request_id: Some(format!("system:{job}")),
            ..RequestCtx::default()
        }
    }

    /// The authenticated principal, or UNAUTHENTICATED.
    pub fn principal(&self) -> ApiResult<&Principal> {
        self.principal
            .as_ref()
            .ok_or_else(|| ApiError::Unauthenticated("sign in first".into()))
    }

    /// A principal allowed to mutate; read-only roles, and every user of a
    /// suspended tenant, get FORBIDDEN.
    pub fn writer(&self) -> ApiResult<&Principal> {
        let p = self.principal()?;
        if !p.can_write() {
            return Err(ApiError::Forbidden("this role is read-only".into()));
        }
        if let Access::Suspended { since } = self.access {
            return Err(ApiError::Forbidden(format!(
                "this tenant is suspended since {since}: its users may read and pay, nothing else"
            )));
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

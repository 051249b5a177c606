//! Whether a credential still opens the platform. Its tenant's state says
//! what it may do (cancelled or deprovisioned: nothing; suspended: read,
//! and API keys report usage timed before the suspension; otherwise
//! everything). An access token is revoked when its session was signed
//! out of (or revoked for refresh-token reuse) or its user's token
//! generation moved on (a password change ends every session).
//!
//! Both are read from the store and remembered for [`TTL`], so a request
//! costs no extra query in the common case: a change made through this
//! process is seen at once (it forgets the entry), one made through
//! another process within [`TTL`].

use std::time::Duration;

use dotmac_schema::{Scope, TenantId, TenantState};

use super::ttl_map::TtlMap;
use super::Identity;
use crate::caller::Access;
use crate::error::{ApiError, ApiResult};
use crate::store::{tenant_rows, token_rows, user_rows};

/// How long a tenant's state or a user's token generation is trusted
/// without asking the store again.
pub const TTL: Duration = Duration::from_secs(5);

/// What a tenant's state leaves its credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TenantStanding {
    Open(Access),
    /// Cancelled or deprovisioned: every credential is refused.
    Closed(TenantState),
}

impl TenantStanding {
    fn of(row: &tenant_rows::TenantRow) -> TenantStanding {
        match row.state {
            TenantState::Cancelled | TenantState::Deprovisioned => {
                TenantStanding::Closed(row.state)
            }
            TenantState::Suspended => TenantStanding::Open(Access::Suspended {
                since: row.state_changed_at.unwrap_or(row.updated_at),
            }),
            TenantState::Pending
            | TenantState::Provisioning
            | TenantState::Active
            | TenantState::Maintenance
            | TenantState::Failed => TenantStanding::Open(Access::Full),
        }
    }

    /// What it lets a credential do; UNAUTHENTICATED when closed.
    fn access(self) -> ApiResult<Access> {
        match self {
            TenantStanding::Open(access) => Ok(access),
            TenantStanding::Closed(state) => Err(closed(state)),
        }
    }
}

/// What the store says of one session: its user's token generation (None:
/// the user is gone) and whether the session is still open.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionStanding {
    user: String,
    generation: Option<i32>,
    live: bool,
}

/// Recently read tenant states and sessions, by tenant and session id.
pub struct StandingCache {
    tenants: TtlMap<String, TenantStanding>,
    sessions: TtlMap<String, SessionStanding>,
}

impl Default for StandingCache {
    fn default() -> Self {
        StandingCache {
            tenants: TtlMap::new(TTL),
            sessions: TtlMap::new(TTL),
        }
    }
}

impl StandingCache {
    /// Forgets the tenant's state (it just changed).
    pub fn forget_tenant(&self, id: &str) {
        self.tenants.remove(id);
    }

    /// Forgets a session (it was just signed out of).
    pub fn forget_session(&self, id: &str) {
        self.sessions.remove(id);
    }

    /// Forgets every session of a user (their token generation moved on).
    pub fn forget_user(&self, id: &str) {
        self.sessions.forget_where(|s| s.user == id);
    }
}

/// The tenant's standing, from the cache or the store.
async fn tenant_standing(identity: &Identity, id: &TenantId) -> ApiResult<TenantStanding> {
    if let Some(s) = identity.standing.tenants.get(id.as_str()) {
        return Ok(s);
    }
    let tx = identity.store.begin_system().await?;
    let row = tenant_rows::get(&tx, &Scope::All, id).await;
    tx.commit().await?;
    let standing = match row {
        Ok(row) => TenantStanding::of(&row),
        // A tenant that no longer exists opens nothing.
        Err(ApiError::NotFound { .. }) => TenantStanding::Closed(TenantState::Deprovisioned),
        Err(e) => return Err(e),
    };
    identity
        .standing
        .tenants
        .put(id.as_str().to_owned(), standing);
    Ok(standing)
}

/// What a credential acting in `scope` may do: everything outside a
/// tenant; inside one, what the tenant's state allows. UNAUTHENTICATED when
/// the tenant is cancelled or deprovisioned.
pub async fn tenant_access(identity: &Identity, scope: &Scope) -> ApiResult<Access> {
    let Scope::Tenant(tenant) = scope else {
        return Ok(Access::Full);
    };
    tenant_standing(identity, tenant).await?.access()
}

/// What the tenant of `row` lets its credentials do, read inside the
/// caller's own transaction; UNAUTHENTICATED when it is closed.
pub fn check_open(row: &tenant_rows::TenantRow) -> ApiResult<Access> {
    TenantStanding::of(row).access()
}

/// The answer to every credential of a closed tenant.
pub fn closed(state: TenantState) -> ApiError {
    ApiError::Unauthenticated(format!(
        "this tenant is {state}: its users, tokens and API keys no longer work"
    ))
}

/// Whether user `user`'s access token of generation `generation`, issued
/// in `session`, is still good: UNAUTHENTICATED once that session was
/// signed out of, the user changed the password, or no longer exists.
pub async fn check_session(
    identity: &Identity,
    user: &str,
    generation: i32,
    session: &str,
) -> ApiResult<()> {
    let known = match identity.standing.sessions.get(session) {
        Some(s) if s.user == user => s,
        _ => {
            let tx = identity.store.begin_system().await?;
            let s = SessionStanding {
                user: user.to_owned(),
                generation: user_rows::token_generation_system(&tx, user).await?,
                live: token_rows::session_live_system(&tx, session).await?,
            };
            tx.commit().await?;
            identity
                .standing
                .sessions
                .put(session.to_owned(), s.clone());
            s
        }
    };
    if !known.live || known.generation != Some(generation) {
        return Err(ApiError::Unauthenticated(
            "this access token was revoked (signed out or password changed): sign in again".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_forgotten() {
        let cache = StandingCache::default();
        let s = |user: &str| SessionStanding {
            user: user.to_owned(),
            generation: Some(3),
            live: true,
        };
        assert_eq!(cache.sessions.get("s1"), None);
        cache.sessions.put("s1".into(), s("u1"));
        cache.sessions.put("s2".into(), s("u1"));
        cache.sessions.put("s3".into(), s("u2"));
        assert_eq!(cache.sessions.get("s1"), Some(s("u1")));
        cache.forget_session("s1");
        assert_eq!(cache.sessions.get("s1"), None);
        cache.forget_user("u1");
        assert_eq!(cache.sessions.get("s2"), None);
        assert_eq!(cache.sessions.get("s3"), Some(s("u2")));
        let closed = TenantStanding::Closed(TenantState::Cancelled);
        cache.tenants.put("t1".into(), closed);
        assert_eq!(cache.tenants.get("t1"), Some(closed));
        cache.forget_tenant("t1");
        assert_eq!(cache.tenants.get("t1"), None);
    }
}

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

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dotmac_schema::{Scope, TenantId, TenantState};

use super::Identity;
use crate::caller::Access;
use crate::error::{ApiError, ApiResult};
use crate::store::{tenant_rows, token_rows, user_rows};

/// How long a tenant's state or a user's token generation is trusted
/// without asking the store again.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries beyond this many trigger a sweep of expired ones.
const SWEEP_AT: usize = 10_000;

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
}

/// What the store says of one session: its user's token generation (None:
/// the user is gone) and whether the session is still open.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SessionStanding {
    user: String,
    generation: Option<i32>,
    live: bool,
}

/// Recently read tenant states and sessions.
#[derive(Default)]
pub struct StandingCache {
    tenants: Mutex<HashMap<String, (Instant, TenantStanding)>>,
    sessions: Mutex<HashMap<String, (Instant, SessionStanding)>>,
}

fn fresh<V: Clone>(map: &Mutex<HashMap<String, (Instant, V)>>, key: &str) -> Option<V> {
    let map = map.lock().ok()?;
    map.get(key)
        .filter(|(at, _)| at.elapsed() < TTL)
        .map(|(_, v)| v.clone())
}

fn remember<V>(map: &Mutex<HashMap<String, (Instant, V)>>, key: &str, value: V) {
    if let Ok(mut map) = map.lock() {
        if map.len() >= SWEEP_AT {
            map.retain(|_, (at, _)| at.elapsed() < TTL);
        }
        map.insert(key.to_owned(), (Instant::now(), value));
    }
}

impl StandingCache {
    /// Forgets the tenant's state (it just changed).
    pub fn forget_tenant(&self, id: &str) {
        if let Ok(mut map) = self.tenants.lock() {
            map.remove(id);
        }
    }

    /// Forgets a session (it was just signed out of).
    pub fn forget_session(&self, id: &str) {
        if let Ok(mut map) = self.sessions.lock() {
            map.remove(id);
        }
    }

    /// Forgets every session of a user (their token generation moved on).
    pub fn forget_user(&self, id: &str) {
        if let Ok(mut map) = self.sessions.lock() {
            map.retain(|_, (_, s)| s.user != id);
        }
    }
}

/// The tenant's standing, from the cache or the store.
async fn tenant_standing(identity: &Identity, id: &TenantId) -> ApiResult<TenantStanding> {
    if let Some(s) = fresh(&identity.standing.tenants, id.as_str()) {
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
    remember(&identity.standing.tenants, id.as_str(), standing);
    Ok(standing)
}

/// What a credential acting in `scope` may do: everything outside a
/// tenant; inside one, what the tenant's state allows. UNAUTHENTICATED when
/// the tenant is cancelled or deprovisioned.
pub async fn tenant_access(identity: &Identity, scope: &Scope) -> ApiResult<Access> {
    let Scope::Tenant(tenant) = scope else {
        return Ok(Access::Full);
    };
    match tenant_standing(identity, tenant).await? {
        TenantStanding::Open(access) => Ok(access),
        TenantStanding::Closed(state) => Err(closed(state)),
    }
}

/// What the tenant of `row` lets its credentials do, read inside the
/// caller's own transaction; UNAUTHENTICATED when it is closed.
pub fn check_open(row: &tenant_rows::TenantRow) -> ApiResult<Access> {
    match TenantStanding::of(row) {
        TenantStanding::Open(access) => Ok(access),
        TenantStanding::Closed(state) => Err(closed(state)),
    }
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
    let known = match fresh(&identity.standing.sessions, session) {
        Some(s) if s.user == user => s,
        _ => {
            let tx = identity.store.begin_system().await?;
            let s = SessionStanding {
                user: user.to_owned(),
                generation: user_rows::token_generation_system(&tx, user).await?,
                live: token_rows::session_live_system(&tx, session).await?,
            };
            tx.commit().await?;
            remember(&identity.standing.sessions, session, s.clone());
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
        assert_eq!(fresh(&cache.sessions, "s1"), None);
        remember(&cache.sessions, "s1", s("u1"));
        remember(&cache.sessions, "s2", s("u1"));
        remember(&cache.sessions, "s3", s("u2"));
        assert_eq!(fresh(&cache.sessions, "s1"), Some(s("u1")));
        cache.forget_session("s1");
        assert_eq!(fresh(&cache.sessions, "s1"), None);
        cache.forget_user("u1");
        assert_eq!(fresh(&cache.sessions, "s2"), None);
        assert_eq!(fresh(&cache.sessions, "s3"), Some(s("u2")));
        let closed = TenantStanding::Closed(TenantState::Cancelled);
        remember(&cache.tenants, "t1", closed);
        assert_eq!(fresh(&cache.tenants, "t1"), Some(closed));
        cache.forget_tenant("t1");
        assert_eq!(fresh(&cache.tenants, "t1"), None);
    }
}

//! Who is calling: the one place credentials are read from a request. Axum
//! extractors turn the `authorization` header into a principal (or reject
//! the request with UNAUTHENTICATED through the one error mapping):
//!
//! - [`ServiceCaller`]: the `/v1` routes, an API key (`dmk_…`) or a user's
//!   access token, required;
//! - [`UserCaller`]: user routes (invoice documents), an access token,
//!   required;
//! - [`GraphqlCaller`]: GraphQL over HTTP, a user or nobody, with the
//!   request id and client address.
//!
//! API keys are service credentials and carry no GraphQL permissions.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use dotmac_schema::{Principal, Scope};

use super::HttpState;
use crate::app::App;
use crate::caller::{Access, RequestCtx};
use crate::error::{ApiError, ApiResult};
use crate::limiter::Rate;
use crate::service::identity::{api_keys, standing};

fn bearer(value: &str) -> ApiResult<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthenticated("authorization must be `Bearer <token>`".into()))
}

/// The `authorization` header's text, if any.
pub fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get("authorization").and_then(|v| v.to_str().ok())
}

/// The request id to answer and audit under: the caller's `x-request-id`
/// when it is 1-128 letters, digits, `-`, `_` or `.`, else a new one. A
/// caller's id never holds a `:`, so it can never pass for the
/// `system:<job>` id the platform's own jobs audit under.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// Every request is rate-limited (GCRA, `app.limiter`) before it is served:
/// a tenant's or reseller's credential in its own bucket and in its
/// tenant's (or reseller's) shared one, a platform staff member in their
/// own (larger) bucket, a request without a credential in its client
/// address's.
pub async fn within_rate(
    app: &App,
    principal: Option<&Principal>,
    client: Option<IpAddr>,
) -> ApiResult<()> {
    let l = &app.config.limits;
    let tenant_rate = Rate {
        per_minute: l.tenant_per_minute,
        burst: l.tenant_burst,
    };
    let shared = match principal.map(|p| &p.scope) {
        Some(Scope::Tenant(t)) => Some(format!("tenant:{t}")),
        Some(Scope::Reseller(r)) => Some(format!("reseller:{r}")),
        _ => None,
    };
    let (key, rate) = match principal {
        Some(p) => match &p.scope {
            Scope::Tenant(_) | Scope::Reseller(_) => (
                format!("principal:{}", p.actor()),
                Rate {
                    per_minute: l.principal_per_minute,
                    burst: l.principal_burst,
                },
            ),
            Scope::All => (
                format!("staff:{}", p.actor()),
                Rate {
                    per_minute: l.staff_per_minute,
                    burst: l.staff_burst,
                },
            ),
        },
        None => (
            format!(
                "anonymous:{}",
                client.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
            ),
            Rate {
                per_minute: l.anonymous_per_minute,
                burst: l.anonymous_per_minute,
            },
        ),
    };
    app.limiter.check(&key, rate).await?;
    match shared {
        Some(tenant) => app.limiter.check(&tenant, tenant_rate).await,
        None => Ok(()),
    }
}

/// The client's address: the connection's peer, or, when the peer is one
/// of `trusted` proxies, the nearest address of its `x-forwarded-for` that
/// is not a trusted proxy.
pub fn client_address(
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    trusted: &[IpAddr],
) -> Option<IpAddr> {
    let peer = peer?;
    if !trusted.contains(&peer) {
        return Some(peer);
    }
    let forwarded: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map_while(|a| a.trim().parse::<IpAddr>().ok())
        .collect();
    // Right to left: each hop appended the address it was reached from.
    Some(
        forwarded
            .iter()
            .rev()
            .find(|a| !trusted.contains(a))
            .or(forwarded.first())
            .copied()
            .unwrap_or(peer),
    )
}

/// The client's address of a request (see [`client_address`]).
fn peer(parts: &Parts, app: &App) -> Option<IpAddr> {
    let connected = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    client_address(
        connected,
        &parts.headers,
        &app.config.limits.trusted_proxies,
    )
}

/// A signed-in user: who, until when, and what the tenant lets them do.
pub struct SignedIn {
    pub principal: Principal,
    pub expires_at: DateTime<Utc>,
    pub access: Access,
}

/// A user's access token in `authorization` (`None`: no credential). It
/// must be well signed, unexpired, not revoked (signed out, password
/// changed) and of a tenant that is not closed. An API key is refused: it is
/// no user.
pub async fn user_from(app: &App, authorization: Option<&str>) -> ApiResult<Option<SignedIn>> {
    let Some(token) = authorization.map(bearer).transpose()? else {
        return Ok(None);
    };
    if token.starts_with(crate::auth::API_KEY_PREFIX) {
        return Err(ApiError::Unauthenticated(
            "API keys authenticate the /v1 endpoints, not GraphQL; sign in as a user".into(),
        ));
    }
    let verified = app.identity.keys.verify(token)?;
    if let Some(user) = verified.principal.user_id() {
        standing::check_session(
            &app.identity,
            user.as_str(),
            verified.generation,
            &verified.session,
        )
        .await?;
    }
    let access = standing::tenant_access(&app.identity, &verified.principal.scope).await?;
    Ok(Some(SignedIn {
        principal: verified.principal,
        expires_at: verified.expires_at,
        access,
    }))
}

/// A `/v1` caller: an API key or a user (the credential is required), with
/// what its tenant lets it do.
pub struct ServiceCaller(pub Principal, pub Access);

impl FromRequestParts<HttpState> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &HttpState) -> ApiResult<Self> {
        let token = authorization(&parts.headers)
            .map(bearer)
            .transpose()?
            .ok_or_else(|| ApiError::Unauthenticated("credentials required".into()))?;
        if token.starts_with(crate::auth::API_KEY_PREFIX) {
            let principal = api_keys::authenticate(&st.app.identity, token).await?;
            within_rate(&st.app, Some(&principal), peer(parts, &st.app)).await?;
            let access = standing::tenant_access(&st.app.identity, &principal.scope).await?;
            return Ok(ServiceCaller(principal, access));
        }
        let user = user_from(&st.app, authorization(&parts.headers))
            .await?
            .ok_or_else(|| ApiError::Unauthenticated("credentials required".into()))?;
        within_rate(&st.app, Some(&user.principal), peer(parts, &st.app)).await?;
        Ok(ServiceCaller(user.principal, user.access))
    }
}

/// A signed-in user; the access token is required.
pub struct UserCaller(pub Principal);

impl FromRequestParts<HttpState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &HttpState) -> ApiResult<Self> {
        match user_from(&st.app, authorization(&parts.headers)).await? {
            Some(user) => {
                within_rate(&st.app, Some(&user.principal), peer(parts, &st.app)).await?;
                Ok(UserCaller(user.principal))
            }
            None => Err(ApiError::Unauthenticated("sign in first".into())),
        }
    }
}

/// The caller of a GraphQL request over HTTP: a user or anonymous, with
/// the request id and address (login attempts are limited per address).
pub struct GraphqlCaller(pub RequestCtx);

impl FromRequestParts<HttpState> for GraphqlCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &HttpState) -> ApiResult<Self> {
        let user = user_from(&st.app, authorization(&parts.headers)).await?;
        let peer = peer(parts, &st.app);
        within_rate(&st.app, user.as_ref().map(|u| &u.principal), peer).await?;
        Ok(GraphqlCaller(RequestCtx {
            expires_at: user.as_ref().map(|u| u.expires_at),
            access: user.as_ref().map(|u| u.access).unwrap_or_default(),
            principal: user.map(|u| u.principal),
            request_id: Some(request_id(&parts.headers)),
            client_ip: peer,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            "6.6.6.6, 1.2.3.4, 10.0.0.2".parse().unwrap(),
        );
        let lb = [ip("10.0.0.1"), ip("10.0.0.2")];
        // Through the load balancers: the nearest untrusted hop.
        assert_eq!(
            client_address(Some(ip("10.0.0.1")), &headers, &lb),
            Some(ip("1.2.3.4"))
        );
        // From anywhere else, the header is the client's own word: ignored.
        assert_eq!(
            client_address(Some(ip("5.5.5.5")), &headers, &lb),
            Some(ip("5.5.5.5"))
        );
        assert_eq!(
            client_address(Some(ip("10.0.0.1")), &headers, &[]),
            Some(ip("10.0.0.1"))
        );
        // A garbled header from a trusted proxy: its valid prefix, else the peer.
        headers.insert("x-forwarded-for", "junk".parse().unwrap());
        assert_eq!(
            client_address(Some(ip("10.0.0.1")), &headers, &lb),
            Some(ip("10.0.0.1"))
        );
    }
}

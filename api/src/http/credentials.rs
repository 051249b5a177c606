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

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use dotmac_schema::Principal;

use super::HttpState;
use crate::app::App;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::identity::api_keys;

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
/// when it is sane, else a new one.
pub fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// A user's access token in `authorization` (`None`: no credential), with
/// when it expires. An API key is refused: it is no user.
pub fn user_from(
    app: &App,
    authorization: Option<&str>,
) -> ApiResult<Option<(Principal, DateTime<Utc>)>> {
    let Some(token) = authorization.map(bearer).transpose()? else {
        return Ok(None);
    };
    if token.starts_with(crate::auth::API_KEY_PREFIX) {
        return Err(ApiError::Unauthenticated(
            "API keys authenticate the /v1 endpoints, not GraphQL; sign in as a user".into(),
        ));
    }
    app.identity.keys.verify(token).map(Some)
}

/// A `/v1` caller: an API key or a user; the credential is required.
pub struct ServiceCaller(pub Principal);

impl FromRequestParts<HttpState> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &HttpState) -> ApiResult<Self> {
        let token = authorization(&parts.headers)
            .map(bearer)
            .transpose()?
            .ok_or_else(|| ApiError::Unauthenticated("credentials required".into()))?;
        let principal = if token.starts_with(crate::auth::API_KEY_PREFIX) {
            api_keys::authenticate(&st.app.identity, token).await?
        } else {
            st.app.identity.keys.verify(token)?.0
        };
        Ok(ServiceCaller(principal))
    }
}

/// A signed-in user; the access token is required.
pub struct UserCaller(pub Principal);

impl FromRequestParts<HttpState> for UserCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &HttpState) -> ApiResult<Self> {
        match user_from(&st.app, authorization(&parts.headers))? {
            Some((principal, _)) => Ok(UserCaller(principal)),
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
        let (principal, expires_at) = user_from(&st.app, authorization(&parts.headers))?.unzip();
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        Ok(GraphqlCaller(RequestCtx {
            principal,
            expires_at,
            request_id: Some(request_id(&parts.headers)),
            client_ip: peer,
        }))
    }
}

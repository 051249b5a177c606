//! The HTTP surface: `/graphql` (POST queries, GET GraphiQL or WebSocket
//! subscriptions), health probes and `/v1/whoami` for API keys; request ids,
//! per-tenant rate limits and the body size limit (413).

pub mod intake;
pub mod invoice_render;
pub mod payments;

use std::net::SocketAddr;

use async_graphql::http::{GraphiQLSource, ALL_WEBSOCKET_PROTOCOLS};
use async_graphql::{Data, ServerError};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use dotmac_schema::Scope;
use tower_http::limit::RequestBodyLimitLayer;

use crate::app::App;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::graphql::errors::{check_aliases, with_codes};
use crate::graphql::Schemas;
use crate::limiter::Rate;
use crate::service::identity::api_keys;

#[derive(Clone)]
struct HttpState {
    app: App,
    schemas: Schemas,
}

pub fn router(app: App, schemas: Schemas) -> Router {
    let limit = app.config.limits.max_body_bytes;
    let events_limit = app.config.limits.max_events_body_bytes;
    let intake = Router::new()
        .route("/v1/events", post(events))
        .layer(DefaultBodyLimit::max(events_limit))
        .layer(RequestBodyLimitLayer::new(events_limit))
        .with_state(HttpState {
            app: app.clone(),
            schemas: schemas.clone(),
        });
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/graphql/ws", get(graphql_get))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/v1/whoami", get(whoami))
        .route("/v1/invoices/{file}", get(invoice_document))
        .route("/v1/webhooks/payments", post(payment_webhook))
        .layer(RequestBodyLimitLayer::new(limit))
        .with_state(HttpState { app, schemas })
        .merge(intake)
}

async fn payment_webhook(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    crate::http::payments::handle(State(st.app), headers, body).await
}

async fn events(
    State(st): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    intake::post_events(&st.app, &headers, &body).await
}

fn bearer(value: &str) -> ApiResult<&str> {
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .ok_or_else(|| ApiError::Unauthenticated("authorization must be `Bearer <token>`".into()))
}

/// The caller of a `/v1` request: a `dmk_` API key or a user's access token.
/// No header means anonymous.
pub async fn principal_from(
    app: &App,
    authorization: Option<&str>,
) -> ApiResult<Option<dotmac_schema::Principal>> {
    let Some(token) = authorization.map(bearer).transpose()? else {
        return Ok(None);
    };
    if token.starts_with(crate::auth::API_KEY_PREFIX) {
        return api_keys::authenticate(&app.identity, token).await.map(Some);
    }
    app.identity.keys.verify(token).map(|(p, _)| Some(p))
}

/// The caller of a GraphQL request: users only. API keys are service
/// credentials for the `/v1` endpoints and carry no GraphQL permissions.
pub fn user_from(
    app: &App,
    authorization: Option<&str>,
) -> ApiResult<Option<(dotmac_schema::Principal, chrono::DateTime<chrono::Utc>)>> {
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

fn request_id(headers: &HeaderMap) -> String {
    headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| uuid::Uuid::now_v7().to_string(), str::to_owned)
}

/// An error answered before GraphQL runs, in GraphQL's error shape.
fn error_response(err: ApiError) -> Response {
    let status = match &err {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        ApiError::Internal(e) => {
            tracing::error!(error = %e, "internal error before execution");
            StatusCode::INTERNAL_SERVER_ERROR
        }
        _ => StatusCode::BAD_REQUEST,
    };
    let message = match &err {
        ApiError::Internal(_) => "internal error".to_owned(),
        other => other.to_string(),
    };
    let mut e = ServerError::new(message, None);
    e.extensions
        .get_or_insert_with(Default::default)
        .set("code", err.code());
    let mut resp = (status, Json(async_graphql::Response::from_errors(vec![e]))).into_response();
    if let ApiError::RateLimited { retry_after_secs } = err {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(retry_after_secs));
    }
    resp
}

/// Per-tenant (or per-reseller) request rate; platform staff are not limited.
async fn rate_limit(app: &App, scope: &Scope) -> ApiResult<()> {
    let key = match scope {
        Scope::All => return Ok(()),
        Scope::Reseller(r) => r.to_string(),
        Scope::Tenant(t) => t.to_string(),
    };
    let l = &app.config.limits;
    app.limiter
        .check(
            &key,
            Rate {
                per_minute: l.tenant_per_minute,
                burst: l.tenant_burst,
            },
        )
        .await
}

async fn request_ctx(
    app: &App,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> ApiResult<RequestCtx> {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let (principal, expires_at) = user_from(app, auth)?.unzip();
    if let Some(p) = &principal {
        rate_limit(app, &p.scope).await?;
    }
    Ok(RequestCtx {
        principal,
        expires_at,
        request_id: Some(request_id(headers)),
        client_ip: peer.map(|a| a.ip()),
    })
}

async fn graphql_post(
    State(st): State<HttpState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    req: GraphQLRequest,
) -> Response {
    let rc = match request_ctx(&st.app, &headers, Some(peer)).await {
        Ok(rc) => rc,
        Err(e) => return error_response(e),
    };
    let id = rc.request_id.clone();
    let mut req = req.into_inner();
    // Parsed here for the alias limit; execution reuses the parsed document.
    let max_aliases = st.app.config.graphql.max_aliases;
    let checked = req
        .parsed_query()
        .and_then(|doc| check_aliases(doc, max_aliases));
    let answer = match checked {
        Ok(()) => st.schemas.http.execute(req.data(rc)).await,
        Err(e) => async_graphql::Response::from_errors(vec![e]),
    };
    let mut resp: Response = GraphQLResponse::from(with_codes(answer)).into_response();
    if let Some(id) = id.and_then(|i| HeaderValue::from_str(&i).ok()) {
        resp.headers_mut().insert("x-request-id", id);
    }
    resp
}

/// GraphiQL for browsers; `graphql-transport-ws` (and the legacy protocol) for upgrades.
async fn graphql_get(State(st): State<HttpState>, req: Request) -> Response {
    let is_upgrade = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return Html(
            GraphiQLSource::build()
                .endpoint("/graphql")
                .subscription_endpoint("/graphql")
                .finish(),
        )
        .into_response();
    }
    let (mut parts, _body) = req.into_parts();
    let protocol = match GraphQLProtocol::from_request_parts(&mut parts, &()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(u) => u,
        Err(e) => return e.into_response(),
    };
    let header_auth = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let rid = request_id(&parts.headers);
    let HttpState { app, schemas } = st;
    let schema = schemas.ws;
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| {
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    // The browser WebSocket API cannot set headers: the token
                    // comes in the connection_init payload.
                    let from_payload = ["authorization", "Authorization"]
                        .iter()
                        .find_map(|k| payload.get(k).and_then(|v| v.as_str()).map(str::to_owned));
                    let auth = from_payload.or(header_auth);
                    let (principal, expires_at) = user_from(&app, auth.as_deref())
                        .map_err(|e| async_graphql::Error::new(e.to_string()))?
                        .unzip();
                    let mut data = Data::default();
                    data.insert(RequestCtx {
                        principal,
                        expires_at,
                        request_id: Some(rid),
                        client_ip: None,
                    });
                    Ok(data)
                })
                .serve()
        })
}

async fn ready(State(st): State<HttpState>) -> Response {
    match st.app.store.connection().ping().await {
        Ok(()) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Lets an ISP deployment check its API key: the tenant it is bound to and its scopes.
async fn whoami(State(st): State<HttpState>, headers: HeaderMap) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    match principal_from(&st.app, auth).await {
        Ok(Some(p)) => {
            let (kind, id, scopes) = match &p.kind {
                dotmac_schema::PrincipalKind::ApiKey { id, scopes } => (
                    "api_key",
                    id.to_string(),
                    scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                ),
                dotmac_schema::PrincipalKind::User { id, role } => {
                    ("user", id.to_string(), vec![role.as_str()])
                }
                dotmac_schema::PrincipalKind::System { job } => ("system", job.to_string(), vec![]),
            };
            let tenant = match &p.scope {
                Scope::Tenant(t) => Some(t.to_string()),
                _ => None,
            };
            Json(
                serde_json::json!({ "kind": kind, "id": id, "tenantId": tenant, "scopes": scopes }),
            )
            .into_response()
        }
        Ok(None) => error_response(ApiError::Unauthenticated("credentials required".into())),
        Err(e) => error_response(e),
    }
}

/// `GET /v1/invoices/{id}.html` and `.pdf`: a finalized invoice with its
/// full breakdown, for a signed-in user whose scope holds it (404
/// otherwise; 403 for resellers, who see summaries only).
async fn invoice_document(
    State(st): State<HttpState>,
    axum::extract::Path(file): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Response {
    let status_of = |e: &ApiError| match e {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
        ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
        ApiError::Conflict { .. } => StatusCode::CONFLICT,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    let fail = |e: ApiError| {
        let message = match &e {
            ApiError::Internal(_) => "internal error".to_owned(),
            other => other.to_string(),
        };
        (
            status_of(&e),
            Json(serde_json::json!({ "error": { "code": e.code(), "message": message } })),
        )
            .into_response()
    };
    let Some((id, format)) = file.rsplit_once('.') else {
        return fail(ApiError::not_found("invoice"));
    };
    if format != "html" && format != "pdf" {
        return fail(ApiError::not_found("invoice"));
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let principal = match user_from(&st.app, auth) {
        Ok(Some((p, _))) => p,
        Ok(None) => return fail(ApiError::Unauthenticated("sign in first".into())),
        Err(e) => return fail(e),
    };
    match crate::service::billing::documents::invoice_document(&st.app.billing, &principal, id)
        .await
    {
        Ok((row, tenant_name, lines)) if format == "html" => (
            [("content-type", "text/html; charset=utf-8")],
            crate::http::invoice_render::html(&row, &tenant_name, &lines),
        )
            .into_response(),
        Ok((row, tenant_name, lines)) => (
            [
                ("content-type", "application/pdf".to_owned()),
                (
                    "content-disposition",
                    format!(
                        "inline; filename=\"{}.pdf\"",
                        row.number.as_deref().unwrap_or("invoice")
                    ),
                ),
            ],
            crate::http::invoice_render::pdf(&row, &tenant_name, &lines),
        )
            .into_response(),
        Err(e) => fail(e),
    }
}

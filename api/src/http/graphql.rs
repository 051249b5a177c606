//! GraphQL over HTTP: `POST /graphql` runs queries and mutations (after the
//! caller's rate limit, see `credentials::within_rate`, and the alias
//! limit); `GET /graphql` is
//! GraphiQL for a browser, or a WebSocket upgrade serving subscriptions
//! (`graphql-transport-ws`) with the token in the `connection_init` payload.
//! Errors before execution take GraphQL's shape with their code's status.

use async_graphql::http::ALL_WEBSOCKET_PROTOCOLS;
use async_graphql::Data;
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::credentials::{
    authorization, client_address, request_id, user_from, within_rate, GraphqlCaller,
};
use super::HttpState;
use crate::caller::RequestCtx;
use crate::error::ApiError;
use crate::graphql::errors::{check_aliases, server_error, with_codes};

/// An error answered before GraphQL runs: GraphQL's error shape, the code's
/// status (and `retry-after` when rate limited).
fn error_response(err: ApiError) -> Response {
    let status = err.status();
    let retry = err.retry_after();
    let body = async_graphql::Response::from_errors(vec![server_error(&err)]);
    let mut resp = (status, Json(body)).into_response();
    if let Some(secs) = retry {
        resp.headers_mut()
            .insert("retry-after", HeaderValue::from(secs));
    }
    resp
}

pub async fn post(
    State(st): State<HttpState>,
    caller: Result<GraphqlCaller, ApiError>,
    req: GraphQLRequest,
) -> Response {
    let rc = match caller {
        Ok(GraphqlCaller(rc)) => rc,
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
pub async fn get(State(st): State<HttpState>, req: Request) -> Response {
    let is_upgrade = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !is_upgrade {
        return super::graphiql::page();
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
    let header_auth = authorization(&parts.headers).map(str::to_owned);
    let rid = request_id(&parts.headers);
    let client = client_address(
        parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip()),
        &parts.headers,
        &st.app.config.limits.trusted_proxies,
    );
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
                    let refused = |e: ApiError| async_graphql::Error::new(e.public_message());
                    let user = user_from(&app, auth.as_deref()).await.map_err(refused)?;
                    // Opening a socket costs the same rate as a request.
                    within_rate(&app, user.as_ref().map(|u| &u.principal), client)
                        .await
                        .map_err(refused)?;
                    let mut data = Data::default();
                    data.insert(RequestCtx {
                        expires_at: user.as_ref().map(|u| u.expires_at),
                        access: user.as_ref().map(|u| u.access).unwrap_or_default(),
                        principal: user.map(|u| u.principal),
                        request_id: Some(rid),
                        client_ip: client,
                    });
                    Ok(data)
                })
                .serve()
        })
}

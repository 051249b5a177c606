//! The HTTP surface: `/graphql` (POST queries, GET GraphiQL or WebSocket
//! subscriptions), the `/v1` routes (usage intake, invoice documents, the
//! payment webhook, licences for instances, `whoami` for API keys), health probes, and the body
//! size limits (413). Credentials are read by the extractors of
//! [`credentials`]; errors answer through `ApiError`'s one `IntoResponse`.

pub mod credentials;
pub mod graphiql;
pub mod graphql;
pub mod intake;
pub mod invoice_render;
pub mod invoices;
pub mod licences;
pub mod payments;

use axum::extract::{DefaultBodyLimit, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use dotmac_schema::{PrincipalKind, Scope};
use tower_http::limit::RequestBodyLimitLayer;

use crate::app::App;
use crate::caller::Access;
use crate::error::ApiError;
use crate::graphql::Schemas;
use credentials::ServiceCaller;

/// What every handler is given.
#[derive(Clone)]
pub struct HttpState {
    pub app: App,
    pub schemas: Schemas,
}

pub fn router(app: App, schemas: Schemas) -> Router {
    let limit = app.config.limits.max_body_bytes;
    let events_limit = app.config.limits.max_events_body_bytes;
    let state = HttpState { app, schemas };
    let intake = Router::new()
        .route("/v1/events", post(intake::post_events))
        .layer(DefaultBodyLimit::max(events_limit))
        .layer(RequestBodyLimitLayer::new(events_limit))
        .with_state(state.clone());
    Router::new()
        .route("/graphql", get(graphql::get).post(graphql::post))
        .route("/graphql/ws", get(graphql::get))
        .route("/graphiql.js", get(graphiql::start_script))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/v1/whoami", get(whoami))
        .route("/v1/invoices/{file}", get(invoices::document))
        .route("/v1/webhooks/payments", post(payments::handle))
        .route("/v1/licences/revocations", get(licences::revocations))
        .route("/v1/entitlements", get(licences::entitlements))
        .route("/v1/licences/{id}", get(licences::file))
        .route("/v1/licences/{id}/activations", post(licences::activate))
        .route(
            "/v1/licences/{id}/activations/{instance}",
            axum::routing::delete(licences::deactivate),
        )
        .layer(RequestBodyLimitLayer::new(limit))
        .with_state(state)
        .merge(intake)
}

async fn ready(State(st): State<HttpState>) -> Result<&'static str, ApiError> {
    st.app.store.connection().ping().await.map_err(|e| {
        tracing::warn!(error = %e, "not ready");
        ApiError::Unavailable("database unavailable".into())
    })?;
    Ok("ready")
}

/// Lets an ISP deployment check its API key: the tenant it is bound to and
/// its scopes (or a user: their role). A suspended tenant's keys are
/// refused here: they only report usage from before the suspension.
async fn whoami(
    ServiceCaller(p, access): ServiceCaller,
) -> Result<Json<serde_json::Value>, ApiError> {
    if let (PrincipalKind::ApiKey { .. }, Access::Suspended { since }) = (&p.kind, access) {
        return Err(suspended_key(since));
    }
    let (kind, id, scopes) = match &p.kind {
        PrincipalKind::ApiKey { id, scopes } => (
            "api_key",
            id.to_string(),
            scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
        ),
        PrincipalKind::User { id, role } => ("user", id.to_string(), vec![role.as_str()]),
        PrincipalKind::System { job } => ("system", job.to_string(), vec![]),
    };
    let tenant = match &p.scope {
        Scope::Tenant(t) => Some(t.to_string()),
        _ => None,
    };
    Ok(Json(
        serde_json::json!({ "kind": kind, "id": id, "tenantId": tenant, "scopes": scopes }),
    ))
}

/// The answer to a suspended tenant's API key used for anything but usage
/// from before the suspension.
fn suspended_key(since: chrono::DateTime<chrono::Utc>) -> ApiError {
    ApiError::Forbidden(format!(
        "this tenant is suspended since {since}: its API keys only report usage timed before then"
    ))
}

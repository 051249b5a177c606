//! `POST /v1/events`: the HTTP intake of usage events (a CloudEvents batch
//! with a tenant's API key), answered per event after the sink took them.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dotmac_ingest::{parse_body_raw, BatchError};
use dotmac_schema::{ApiKeyScope, PrincipalKind, Scope};
use serde_json::json;

use crate::app::App;
use crate::error::ApiError;

fn refuse(status: StatusCode, code: &str, message: String) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

/// One event's outcome in the answer of `POST /v1/events`.
#[derive(serde::Serialize)]
struct EventResult<'a> {
    index: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(serde::Serialize)]
struct EventsAnswer<'a> {
    accepted: usize,
    rejected: usize,
    failed: usize,
    results: Vec<EventResult<'a>>,
}

/// `POST /v1/events`: one verdict per event, answered after the broker
/// acknowledged every accepted one. 200 when all are accepted, 207 when
/// some are rejected, 422 when none is; 503 when the broker did not
/// acknowledge (those events are reported `failed`: send them again, the
/// aggregator dedupes by `(tenant, source, id)`).
pub async fn post_events(app: &App, headers: &HeaderMap, body: &[u8]) -> Response {
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    let principal = match crate::http::principal_from(app, auth).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return refuse(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "an API key with usage:write is required".into(),
            )
        }
        Err(e @ ApiError::Unauthenticated(_)) => {
            return refuse(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
        }
        Err(e) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                e.code(),
                "internal error".into(),
            )
        }
    };
    let tenant = match (&principal.kind, &principal.scope) {
        (PrincipalKind::ApiKey { scopes, .. }, Scope::Tenant(t))
            if scopes.contains(&ApiKeyScope::UsageWrite) =>
        {
            t.to_string()
        }
        _ => {
            return refuse(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "usage is sent with a tenant's API key that has the usage:write scope".into(),
            )
        }
    };
    let Some(intake) = app.intake.as_ref() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "usage intake is not configured on this server (kafka_brokers)".into(),
        );
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let verdicts = match parse_body_raw(content_type, body) {
        Ok(v) => v,
        Err(e @ BatchError::UnsupportedMediaType(_)) => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                e.to_string(),
            )
        }
        Err(e) => return refuse(StatusCode::BAD_REQUEST, "VALIDATION", format!("body: {e}")),
    };
    let accepted: Vec<&[u8]> = verdicts
        .iter()
        .filter_map(|v| v.as_ref().ok().map(|(_, raw)| *raw))
        .collect();
    let mut delivered = intake.send_all(&tenant, &accepted).await.into_iter();
    let (mut n_accepted, mut n_rejected, mut n_failed) = (0, 0, 0);
    let results: Vec<EventResult<'_>> = verdicts
        .iter()
        .enumerate()
        .map(|(index, verdict)| match verdict {
            Ok((event, _)) => {
                let (status, reason) = match delivered.next() {
                    Some(Ok(())) => ("accepted", None),
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "broker did not acknowledge an event");
                        ("failed", Some(e.to_string()))
                    }
                    None => ("failed", Some("not sent".to_owned())),
                };
                if reason.is_none() {
                    n_accepted += 1;
                } else {
                    n_failed += 1;
                }
                EventResult {
                    index,
                    id: Some(&event.id),
                    status,
                    field: None,
                    reason,
                }
            }
            Err(e) => {
                n_rejected += 1;
                EventResult {
                    index,
                    id: None,
                    status: "rejected",
                    field: e.field(),
                    reason: Some(e.to_string()),
                }
            }
        })
        .collect();
    let status = if n_failed > 0 {
        StatusCode::SERVICE_UNAVAILABLE
    } else if n_rejected == 0 {
        StatusCode::OK
    } else if n_accepted > 0 {
        StatusCode::MULTI_STATUS
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    (
        status,
        Json(EventsAnswer {
            accepted: n_accepted,
            rejected: n_rejected,
            failed: n_failed,
            results,
        }),
    )
        .into_response()
}

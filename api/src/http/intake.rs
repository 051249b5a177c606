//! `POST /v1/events`: the HTTP intake of usage events (a CloudEvents batch
//! with a tenant's API key), answered per event after the sink took them.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dotmac_ingest::{parse_body_raw, BatchError};
use dotmac_schema::{ApiKeyScope, PrincipalKind, Scope};

use super::credentials::ServiceCaller;
use super::HttpState;
use crate::caller::Access;
use crate::error::{ApiError, ApiResult};

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
/// aggregator dedupes by `(tenant, source, id)`). A request refused as a
/// whole (credential, scope, media type, body) answers as any error does.
pub async fn post_events(
    State(st): State<HttpState>,
    ServiceCaller(principal, access): ServiceCaller,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let tenant = match (&principal.kind, &principal.scope) {
        (PrincipalKind::ApiKey { scopes, .. }, Scope::Tenant(t))
            if scopes.contains(&ApiKeyScope::UsageWrite) =>
        {
            t.to_string()
        }
        _ => {
            return Err(ApiError::Forbidden(
                "usage is sent with a tenant's API key that has the usage:write scope".into(),
            ))
        }
    };
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let parsed = parse_body_raw(content_type, &body).map_err(|e| match e {
        BatchError::UnsupportedMediaType(_) => ApiError::UnsupportedMediaType(e.to_string()),
        other => ApiError::validation("body", other.to_string()),
    })?;
    // A suspended tenant may still report what it used before the
    // suspension, nothing after it.
    let verdicts: Vec<_> = parsed
        .into_iter()
        .map(|v| {
            let (event, raw) = v.map_err(|e| (e.field(), e.to_string()))?;
            match access {
                Access::Suspended { since } if event.time >= since => Err((
                    Some("time"),
                    format!("the tenant is suspended since {since}: only usage timed before then is accepted"),
                )),
                _ => Ok((event, raw)),
            }
        })
        .collect();
    // The request is checked before the server's state: a malformed batch
    // is the sender's to fix whether or not the intake is up.
    let intake = st.app.intake.as_ref().ok_or_else(|| {
        ApiError::Unavailable(
            "usage intake is not configured on this server (kafka_brokers)".into(),
        )
    })?;
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
            Err((field, reason)) => {
                n_rejected += 1;
                EventResult {
                    index,
                    id: None,
                    status: "rejected",
                    field: *field,
                    reason: Some(reason.clone()),
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
    Ok((
        status,
        Json(EventsAnswer {
            accepted: n_accepted,
            rejected: n_rejected,
            failed: n_failed,
            results,
        }),
    )
        .into_response())
}

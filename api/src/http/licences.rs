//! `/v1/licences`: what an ISP instance asks with its API key
//! (`license:read`): its licence file, a seat for its instance id, and the
//! signed revocation list. Signed-in admins may use them too.
//!
//! - `GET /v1/licences/revocations` → the signed revocation list (text)
//! - `GET /v1/licences/{id}` → the signed licence file (text)
//! - `POST /v1/licences/{id}/activations` `{"instanceId": …}` → 201, the
//!   seat and a fresh file naming the instance
//! - `DELETE /v1/licences/{id}/activations/{instanceId}` → 204
//! - `GET /v1/entitlements[?tenantId=…]` → the signed entitlements
//!   snapshot, with the weak `ETag: W/"v<version>"`; `If-None-Match` with
//!   the current one answers 304

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::credentials::ServiceCaller;
use super::HttpState;
use crate::caller::RequestCtx;
use crate::error::ApiResult;
use crate::service::licensing::{entitlements, licences};

fn ctx(ServiceCaller(principal, access): ServiceCaller) -> RequestCtx {
    RequestCtx {
        principal: Some(principal),
        access,
        ..RequestCtx::default()
    }
}

fn signed(document: String) -> Response {
    ([("content-type", "text/plain; charset=utf-8")], document).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EntitlementsQuery {
    tenant_id: Option<String>,
}

pub async fn entitlements(
    State(st): State<HttpState>,
    Query(q): Query<EntitlementsQuery>,
    headers: HeaderMap,
    caller: ServiceCaller,
) -> ApiResult<Response> {
    let rc = ctx(caller);
    let signed = entitlements::snapshot(&st.app.licensing, &rc, q.tenant_id.as_deref()).await?;
    // Weak: two answers of one version differ only in when they were
    // signed (`issued_at`), and grant the same.
    let etag = format!("W/\"v{}\"", signed.version);
    let unchanged = headers
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == &etag[2..])
        });
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, [("etag", etag)]).into_response());
    }
    Ok((
        [
            ("content-type", "text/plain; charset=utf-8".to_owned()),
            ("etag", etag),
        ],
        signed.document,
    )
        .into_response())
}

pub async fn revocations(
    State(st): State<HttpState>,
    caller: ServiceCaller,
) -> ApiResult<Response> {
    Ok(signed(
        licences::revocation_list(&st.app.licensing, &ctx(caller)).await?,
    ))
}

pub async fn file(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    caller: ServiceCaller,
) -> ApiResult<Response> {
    let (_, file) = licences::licence_file(&st.app.licensing, &ctx(caller), &id).await?;
    Ok(signed(file))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Activation {
    instance_id: String,
}

pub async fn activate(
    State(st): State<HttpState>,
    Path(id): Path<String>,
    caller: ServiceCaller,
    Json(body): Json<Activation>,
) -> ApiResult<Response> {
    let rc = ctx(caller);
    let seat = licences::activate(&st.app.licensing, &rc, &id, &body.instance_id).await?;
    let (_, file) = licences::licence_file(&st.app.licensing, &rc, &id).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({
            "licenceId": seat.licence_id,
            "instanceId": seat.instance_id,
            "activatedAt": seat.activated_at,
            "file": file,
        })),
    )
        .into_response())
}

pub async fn deactivate(
    State(st): State<HttpState>,
    Path((id, instance)): Path<(String, String)>,
    caller: ServiceCaller,
) -> ApiResult<StatusCode> {
    licences::deactivate(&st.app.licensing, &ctx(caller), &id, &instance).await?;
    Ok(StatusCode::NO_CONTENT)
}

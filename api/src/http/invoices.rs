//! `GET /v1/invoices/{id}.html` and `.pdf`: a finalized invoice with its
//! full breakdown, for a signed-in user whose scope holds it (NOT_FOUND
//! otherwise; FORBIDDEN for resellers, who see summaries only; CONFLICT for
//! a draft).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use super::credentials::UserCaller;
use super::invoice_render;
use super::HttpState;
use crate::error::{ApiError, ApiResult};
use crate::service::billing::documents::invoice_document;

pub async fn document(
    State(st): State<HttpState>,
    Path(file): Path<String>,
    UserCaller(principal): UserCaller,
) -> ApiResult<Response> {
    let (id, format) = file
        .rsplit_once('.')
        .filter(|(_, f)| *f == "html" || *f == "pdf")
        .ok_or(ApiError::not_found("invoice"))?;
    let (row, tenant_name, lines) = invoice_document(&st.app.billing, &principal, id).await?;
    Ok(if format == "html" {
        (
            [("content-type", "text/html; charset=utf-8")],
            invoice_render::html(&row, &tenant_name, &lines),
        )
            .into_response()
    } else {
        (
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
            invoice_render::pdf(&row, &tenant_name, &lines),
        )
            .into_response()
    })
}

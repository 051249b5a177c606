//! The API's error type, its stable codes and what each code is over HTTP.
//! Errors become responses in exactly one place per transport: the
//! [`IntoResponse`] below for every HTTP route (a JSON body `{"error":
//! {"code", "message", "field"}}` with the code's status), and
//! `crate::graphql::errors` for GraphQL (a `code` extension). Internals are
//! logged, never shown.

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use dotmac_schema::{IdError, SlugError, TransitionError};

/// Every way a request can fail, by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{field}: {reason}")]
    Validation { field: String, reason: String },
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    /// Also what a caller gets for an object outside its scope: no existence oracle.
    #[error("{kind} not found")]
    NotFound { kind: &'static str },
    #[error("{field}: {reason}")]
    Conflict { field: String, reason: String },
    /// A backing service this request needs is not configured or not up.
    #[error("{0}")]
    Unavailable(String),
    #[error("too many requests; retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A request body in a format the route does not take.
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("internal error")]
    Internal(#[source] InternalError),
}

/// Failures of our own or of a backing service; logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum InternalError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("password hashing: {0}")]
    Hash(String),
    #[error("token: {0}")]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error("{0}")]
    Other(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn validation(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::Validation {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn conflict(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ApiError::Conflict {
            field: field.into(),
            reason: reason.into(),
        }
    }

    pub fn not_found(kind: &'static str) -> Self {
        ApiError::NotFound { kind }
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        ApiError::Internal(InternalError::Other(msg.into()))
    }

    /// The stable `code` extension.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation { .. } => "VALIDATION",
            ApiError::Unauthenticated(_) => "UNAUTHENTICATED",
            ApiError::Unavailable(_) => "UNAVAILABLE",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound { .. } => "NOT_FOUND",
            ApiError::Conflict { .. } => "CONFLICT",
            ApiError::RateLimited { .. } => "RATE_LIMITED",
            ApiError::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            ApiError::Internal(_) => "INTERNAL",
        }
    }

    /// The HTTP status of the code: the same for every route.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation { .. } => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the caller is told: the message, except that internal errors
    /// are logged here and say only "internal error".
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(inner) => {
                tracing::error!(error = %inner, "internal error");
                "internal error".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The whole cause, internals included: for operators' own reports (a
    /// close's failed subscriptions), never for a caller's answer.
    pub fn detail(&self) -> String {
        match self {
            ApiError::Internal(inner) => inner.to_string(),
            other => other.to_string(),
        }
    }

    /// Seconds to wait before retrying, for a `retry-after` header.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// The input field the error is about, if any.
    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Validation { field, .. } | ApiError::Conflict { field, .. } => Some(field),
            _ => None,
        }
    }

    /// An id argument that does not parse is a validation error on that field.
    pub fn bad_id(field: &str, e: IdError) -> Self {
        Self::validation(field, e.to_string())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(e: sea_orm::DbErr) -> Self {
        ApiError::Internal(InternalError::Db(e))
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        ApiError::Internal(InternalError::Redis(e))
    }
}

impl From<TransitionError> for ApiError {
    fn from(e: TransitionError) -> Self {
        ApiError::validation("state", e.to_string())
    }
}

impl ApiError {
    pub fn bad_slug(field: &str, e: SlugError) -> Self {
        Self::validation(field, e.to_string())
    }
}

/// The body of an HTTP error answer.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_owned(),
                message: self.public_message(),
                field: self.field().map(str::to_owned),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each kind of error.
    pub(crate) fn every_error() -> Vec<ApiError> {
        vec![
            ApiError::validation("input.name", "must not be empty"),
            ApiError::Unauthenticated("sign in first".into()),
            ApiError::Forbidden("this role is read-only".into()),
            ApiError::not_found("tenant"),
            ApiError::conflict("input.slug", "is taken"),
            ApiError::Unavailable("no broker".into()),
            ApiError::RateLimited {
                retry_after_secs: 7,
            },
            ApiError::UnsupportedMediaType("text/plain".into()),
            ApiError::internal("the disk is on fire"),
        ]
    }

    #[tokio::test]
    async fn every_code_has_one_status_and_a_body_that_agrees() {
        let mut codes = std::collections::BTreeSet::new();
        for error in every_error() {
            let (code, status, field) = (
                error.code(),
                error.status(),
                error.field().map(str::to_owned),
            );
            assert!(codes.insert(code), "{code} appears twice");
            let expected = match code {
                "VALIDATION" => 400,
                "UNAUTHENTICATED" => 401,
                "FORBIDDEN" => 403,
                "NOT_FOUND" => 404,
                "CONFLICT" => 409,
                "UNSUPPORTED_MEDIA_TYPE" => 415,
                "RATE_LIMITED" => 429,
                "INTERNAL" => 500,
                "UNAVAILABLE" => 503,
                other => panic!("{other} has no status in this table"),
            };
            assert_eq!(status.as_u16(), expected, "{code}");
            let retry = error.retry_after();
            let response = error.into_response();
            assert_eq!(response.status(), status);
            assert_eq!(
                response.headers().get("retry-after").map(|v| v
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()),
                retry
            );
            let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body: ErrorBody = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(body.error.code, code);
            assert_eq!(body.error.field, field);
            if code == "INTERNAL" {
                assert_eq!(
                    body.error.message, "internal error",
                    "internals never shown"
                );
            }
        }
    }
}

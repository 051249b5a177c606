//! The API's error type and its stable codes. Errors become GraphQL/HTTP
//! responses in exactly one place ([`crate::graphql::errors`]), never leaking
//! internals.

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
            ApiError::Internal(_) => "INTERNAL",
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

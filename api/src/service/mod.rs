//! Use cases, one folder per capability (directory, identity, metering,
//! billing, licensing): authorize, validate, change the store in one transaction with
//! its audit record, then announce. Each capability's use cases take the
//! narrow dependencies that capability needs (its struct in `mod.rs`), never
//! the whole application; transports are thin calls into here. Also the
//! input checks every capability shares.

pub mod billing;
pub mod directory;
pub mod identity;
pub mod licensing;
pub mod metering;

use crate::error::{ApiError, ApiResult};

/// A required, trimmed, bounded text field.
pub fn required_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::validation(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(ApiError::validation(
            field,
            format!("must be at most {max} characters"),
        ));
    }
    Ok(v.to_owned())
}

/// A plausible email address, lowercased.
pub fn email(field: &str, value: &str) -> ApiResult<String> {
    let v = value.trim().to_lowercase();
    let ok = v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
        })
        && !v.contains(char::is_whitespace);
    if !ok {
        return Err(ApiError::validation(field, "must be an email address"));
    }
    Ok(v)
}

/// Parses an id argument, naming the field when it is malformed.
pub fn parse_id<T: std::str::FromStr<Err = dotmac_schema::IdError>>(
    field: &str,
    s: &str,
) -> ApiResult<T> {
    s.parse().map_err(|e| ApiError::bad_id(field, e))
}

/// Lifecycle reasons are kept for operators; bound their size.
/// The longest reason a transition (or any operator's action) records.
pub const REASON_MAX: usize = 1000;

pub fn reason(value: Option<&str>, required: bool) -> ApiResult<Option<String>> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        None if required => Err(ApiError::validation(
            "reason",
            "must be given for this transition",
        )),
        None => Ok(None),
        Some(v) => required_text("reason", v, REASON_MAX).map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email("e", " A@Example.COM ").unwrap(), "a@example.com");
        assert!(email("e", "nope").is_err());
        assert!(email("e", "a@b").is_err());
        assert!(email("e", "a b@c.d").is_err());
    }
}

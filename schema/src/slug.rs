//! Tenant slugs: the DNS-safe short name used in URLs and namespaces
//! (lowercase `[a-z0-9-]`, 3–63 characters, no leading or trailing hyphen).

/// Why a slug is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlugError {
    #[error("must be 3 to 63 characters long (got {0})")]
    Length(usize),
    #[error("may contain only lowercase letters, digits and hyphens (found {0:?})")]
    Character(char),
    #[error("must not start or end with a hyphen")]
    EdgeHyphen,
    #[error("cannot derive a slug from {0:?}: it has fewer than 3 letters or digits")]
    Underivable(String),
}

pub const MIN_LEN: usize = 3;
pub const MAX_LEN: usize = 63;

/// Checks a slug given by a user.
pub fn validate_slug(slug: &str) -> Result<(), SlugError> {
    let len = slug.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(SlugError::Length(len));
    }
    if let Some(c) = slug
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Err(SlugError::Character(c));
    }
    if slug.starts_with('-') || slug.ends_with('-') {
        return Err(SlugError::EdgeHyphen);
    }
    Ok(())
}

/// Derives a valid slug from a display name: ASCII letters and digits kept
/// (lowercased), every other run of characters becomes one hyphen, trimmed to 63.
pub fn slug_from_name(name: &str) -> Result<String, SlugError> {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    out.truncate(MAX_LEN);
    let trimmed = out.trim_matches('-').to_owned();
    if trimmed.len() < MIN_LEN {
        return Err(SlugError::Underivable(name.to_owned()));
    }
    validate_slug(&trimmed)?;
    Ok(trimmed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn derived_slugs_are_always_valid(name in "\\PC{0,100}") {
            if let Ok(slug) = slug_from_name(&name) {
                prop_assert_eq!(validate_slug(&slug), Ok(()));
            }
        }

        #[test]
        fn valid_slugs_match_the_rule(s in "[a-z0-9-]{0,70}") {
            let ok = (3..=63).contains(&s.len()) && !s.starts_with('-') && !s.ends_with('-');
            prop_assert_eq!(validate_slug(&s).is_ok(), ok);
        }

        #[test]
        fn any_uppercase_or_symbol_is_rejected(prefix in "[a-z]{3,10}", bad in "[A-Z_ .!]") {
            let s = format!("{prefix}{bad}x");
            prop_assert!(validate_slug(&s).is_err());
        }

        #[test]
        fn names_with_enough_alphanumerics_derive(name in "[A-Za-z0-9]{3,20}([ _.]+[A-Za-z0-9]{1,10}){0,4}") {
            let slug = slug_from_name(&name).unwrap();
            prop_assert!(slug.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        }
    }

    #[test]
    fn examples() {
        assert_eq!(
            slug_from_name("Acme Fiber, Inc.").unwrap(),
            "acme-fiber-inc"
        );
        assert_eq!(slug_from_name("  --Zed--  ").unwrap(), "zed");
        assert!(slug_from_name("é!").is_err());
        assert_eq!(validate_slug("-ab"), Err(SlugError::EdgeHyphen));
        assert_eq!(validate_slug("ab"), Err(SlugError::Length(2)));
        assert_eq!(validate_slug("aBc"), Err(SlugError::Character('B')));
    }
}

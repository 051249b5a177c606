//! Dates and months as callers send them. Every date the platform takes
//! from outside (a month to close or reconcile, an anchor day, a tax rate's
//! first day, a time range, a command's `--now`) is read here, in one strict
//! format and within years 1970 to 9999, so that calendar arithmetic on it
//! can never leave the range chrono represents: a signed or six-digit year
//! (`+262142-12`) is refused before anything computes with it.

use chrono::{DateTime, Datelike, NaiveDate, Utc};

/// The earliest year accepted.
pub const MIN_YEAR: i32 = 1970;
/// The latest year accepted.
pub const MAX_YEAR: i32 = 9999;

/// Why a date was refused; its text is the reason a VALIDATION error gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("must be a month such as 2026-11 (YYYY-MM, years 1970 to 9999)")]
    Month,
    #[error("must be a date such as 2026-11-01 (YYYY-MM-DD, years 1970 to 9999)")]
    Date,
    #[error("must be within the years 1970 to 9999")]
    Range,
}

/// `YYYY-MM`: exactly four digits, a dash, two digits.
pub fn parse_month(text: &str) -> Result<NaiveDate, DateError> {
    let t = text.trim();
    let b = t.as_bytes();
    let shaped = b.len() == 7 && b[4] == b'-' && digits(&b[..4]) && digits(&b[5..]);
    if !shaped {
        return Err(DateError::Month);
    }
    let (year, month) = (number(&b[..4]), number(&b[5..]));
    NaiveDate::from_ymd_opt(year, month as u32, 1)
        .filter(|d| in_range(d.year()))
        .ok_or(DateError::Month)
}

/// `YYYY-MM-DD`: four digits, two, two.
pub fn parse_date(text: &str) -> Result<NaiveDate, DateError> {
    let t = text.trim();
    let b = t.as_bytes();
    let shaped = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && digits(&b[..4])
        && digits(&b[5..7])
        && digits(&b[8..]);
    if !shaped {
        return Err(DateError::Date);
    }
    NaiveDate::from_ymd_opt(
        number(&b[..4]),
        number(&b[5..7]) as u32,
        number(&b[8..]) as u32,
    )
    .filter(|d| in_range(d.year()))
    .ok_or(DateError::Date)
}

/// A time within the accepted years.
pub fn check_time(t: DateTime<Utc>) -> Result<DateTime<Utc>, DateError> {
    if in_range(t.year()) {
        Ok(t)
    } else {
        Err(DateError::Range)
    }
}

/// A date within the accepted years.
pub fn check_date(d: NaiveDate) -> Result<NaiveDate, DateError> {
    if in_range(d.year()) {
        Ok(d)
    } else {
        Err(DateError::Range)
    }
}

fn in_range(year: i32) -> bool {
    (MIN_YEAR..=MAX_YEAR).contains(&year)
}

fn digits(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_digit)
}

fn number(b: &[u8]) -> i32 {
    b.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_plain_four_digit_years_in_range() {
        assert_eq!(
            parse_month("2026-11"),
            Ok(NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
        );
        assert_eq!(
            parse_month(" 9999-12 "),
            Ok(NaiveDate::from_ymd_opt(9999, 12, 1).unwrap())
        );
        for bad in [
            "+262142-12",
            "-0001-01",
            "262142-12",
            "1969-12",
            "0000-01",
            "2026-13",
            "2026-00",
            "2026-1",
            "26-11",
            "2026/11",
            "２０２６-11",
            "",
            "2026-11-01",
        ] {
            assert_eq!(parse_month(bad), Err(DateError::Month), "{bad:?}");
        }
        assert_eq!(
            parse_date("2028-02-29"),
            Ok(NaiveDate::from_ymd_opt(2028, 2, 29).unwrap())
        );
        for bad in [
            "2027-02-29",
            "+2026-11-01",
            "2026-11-1",
            "1969-12-31",
            "10000-01-01",
        ] {
            assert_eq!(parse_date(bad), Err(DateError::Date), "{bad:?}");
        }
        let far: DateTime<Utc> = "0001-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(check_time(far), Err(DateError::Range));
    }

    proptest! {
        /// Whatever the text, parsing answers, and what it accepts is in range.
        #[test]
        fn any_text_parses_to_a_date_in_range_or_is_refused(text in "\\PC{0,12}|[+-]?[0-9]{1,7}-[0-9]{1,3}(-[0-9]{1,3})?") {
            if let Ok(d) = parse_month(&text) {
                prop_assert!(in_range(d.year()) && d.day() == 1);
            }
            if let Ok(d) = parse_date(&text) {
                prop_assert!(in_range(d.year()));
            }
        }
    }
}

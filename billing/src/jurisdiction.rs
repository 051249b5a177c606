//! Which tax rate applies to a tenant: rates are kept per jurisdiction (an
//! ISO 3166-1 country, optionally with an ISO 3166-2 subdivision: `KE`,
//! `US-CA`) and dated from when they take effect. A tenant in `US-CA` pays
//! the `US-CA` rate if there is one, else the `US` rate; of a
//! jurisdiction's rates, the one in force on the period's last day (the
//! tax point: invoices are issued at the period's end).

use chrono::NaiveDate;

use crate::tax::TaxRate;

/// A jurisdiction's rate from a date on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JurisdictionRate {
    pub jurisdiction: String,
    pub effective_from: NaiveDate,
    pub rate: TaxRate,
}

/// Why a jurisdiction code is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be an ISO 3166 code: a country such as KE, or a subdivision such as US-CA")]
pub struct BadJurisdiction;

/// A jurisdiction code in its canonical (upper-case) form.
pub fn parse_jurisdiction(text: &str) -> Result<String, BadJurisdiction> {
    let code = text.trim().to_ascii_uppercase();
    let (country, subdivision) = match code.split_once('-') {
        Some((c, s)) => (c, Some(s)),
        None => (code.as_str(), None),
    };
    let country_ok = country.len() == 2 && country.bytes().all(|b| b.is_ascii_uppercase());
    let subdivision_ok = subdivision
        .is_none_or(|s| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    if country_ok && subdivision_ok {
        Ok(code)
    } else {
        Err(BadJurisdiction)
    }
}

/// The rate for `jurisdiction` in force on `on`: the most specific
/// jurisdiction that has one (the subdivision, then its country), and of
/// its rates the latest to take effect on or before `on`.
pub fn rate_for<'a>(
    rates: &'a [JurisdictionRate],
    jurisdiction: &str,
    on: NaiveDate,
) -> Option<&'a TaxRate> {
    let country = jurisdiction.split('-').next().unwrap_or(jurisdiction);
    let in_force = |code: &str| {
        rates
            .iter()
            .filter(|r| r.jurisdiction == code && r.effective_from <= on)
            .max_by_key(|r| r.effective_from)
            .map(|r| &r.rate)
    };
    in_force(jurisdiction).or_else(|| {
        if country == jurisdiction {
            None
        } else {
            in_force(country)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn rate(code: &str, from: &str, percent: i64) -> JurisdictionRate {
        JurisdictionRate {
            jurisdiction: code.into(),
            effective_from: from.parse().unwrap(),
            rate: TaxRate {
                name: format!("{code} {percent}%"),
                percent: Decimal::from(percent),
                inclusive: false,
            },
        }
    }

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn codes_are_countries_or_subdivisions() {
        assert_eq!(parse_jurisdiction(" ke ").unwrap(), "KE");
        assert_eq!(parse_jurisdiction("us-ca").unwrap(), "US-CA");
        assert_eq!(parse_jurisdiction("GB-ENG").unwrap(), "GB-ENG");
        for bad in ["", "K", "KEN", "K1", "US-", "US-CALI", "US_CA", "U-CA"] {
            assert_eq!(parse_jurisdiction(bad), Err(BadJurisdiction), "{bad:?}");
        }
    }

    #[test]
    fn the_subdivision_wins_over_its_country_and_dates_pick_the_version() {
        let rates = [
            rate("US", "2020-01-01", 0),
            rate("US-CA", "2020-01-01", 7),
            rate("US-CA", "2026-07-01", 8),
            rate("KE", "2020-01-01", 16),
        ];
        let pct = |code: &str, on: &str| rate_for(&rates, code, day(on)).map(|r| r.percent);
        assert_eq!(pct("US-CA", "2026-06-30"), Some(Decimal::from(7)));
        assert_eq!(pct("US-CA", "2026-07-01"), Some(Decimal::from(8)));
        // No rate of its own: its country's.
        assert_eq!(pct("US-NY", "2026-07-01"), Some(Decimal::ZERO));
        assert_eq!(pct("KE", "2026-01-31"), Some(Decimal::from(16)));
        // Before any rate took effect, and an unknown country: none.
        assert_eq!(pct("KE", "2019-12-31"), None);
        assert_eq!(pct("DE", "2026-01-31"), None);
    }

    proptest! {
        /// The chosen rate is in force on the day, of the most specific
        /// jurisdiction that has one then, and no later version of it is.
        #[test]
        fn the_chosen_rate_is_the_latest_in_force_of_the_most_specific(
            entries in prop::collection::vec((0usize..3, 0i64..400, 0i64..30), 0..12),
            on in 0i64..400,
        ) {
            let codes = ["US", "US-CA", "US-NY"];
            let base = day("2026-01-01");
            let rates: Vec<JurisdictionRate> = entries
                .iter()
                .map(|&(c, from, pct)| JurisdictionRate {
                    jurisdiction: codes[c].into(),
                    effective_from: base + chrono::Days::new(from as u64),
                    rate: TaxRate { name: format!("{c}/{from}/{pct}"), percent: Decimal::from(pct), inclusive: false },
                })
                .collect();
            let on = base + chrono::Days::new(on as u64);
            let got = rate_for(&rates, "US-CA", on);
            let in_force = |code: &str| rates.iter().filter(|r| r.jurisdiction == code && r.effective_from <= on).collect::<Vec<_>>();
            let own = in_force("US-CA");
            let country = in_force("US");
            match got {
                None => prop_assert!(own.is_empty() && country.is_empty()),
                Some(r) => {
                    let chosen = rates.iter().find(|x| std::ptr::eq(&x.rate, r)).unwrap();
                    prop_assert!(chosen.effective_from <= on);
                    let pool = if own.is_empty() { &country } else { &own };
                    prop_assert_eq!(&chosen.jurisdiction, &pool[0].jurisdiction);
                    prop_assert!(pool.iter().all(|x| x.effective_from <= chosen.effective_from));
                    // US-NY never applies to a US-CA tenant.
                    prop_assert_ne!(chosen.jurisdiction.as_str(), "US-NY");
                }
            }
        }
    }
}

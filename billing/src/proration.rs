//! Proration by elapsed time. A piece `[from, to)` of a period is charged
//! `cum(to) − cum(from)`, where `cum(t)` is the full price times the elapsed
//! share of the period up to `t`, rounded to the minor unit. Pieces of any
//! split therefore telescope to exactly the rounded full price: no cent is
//! lost or made when a plan changes twice in a month.

use chrono::{DateTime, Utc};
use dotmac_schema::money::{Currency, Rounding};
use rust_decimal::Decimal;

use crate::period::Period;

/// The rounded share of `full` accrued from the period's start to `t`
/// (clamped to the period).
fn accrued(
    full: Decimal,
    period: &Period,
    t: DateTime<Utc>,
    currency: Currency,
    rounding: Rounding,
) -> Decimal {
    let start = period.start_time();
    let end = period.end_time();
    let t = t.clamp(start, end);
    let total = (end - start).num_seconds();
    let elapsed = (t - start).num_seconds();
    if total <= 0 {
        return Decimal::ZERO;
    }
    rounding.round(
        full * Decimal::from(elapsed) / Decimal::from(total),
        currency,
    )
}

/// The part of `full` (a per-period price) due for `[from, to)` of `period`,
/// by elapsed seconds, rounded to `currency`'s minor unit.
pub fn prorate(
    full: Decimal,
    period: &Period,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    currency: Currency,
    rounding: Rounding,
) -> Decimal {
    if to <= from {
        return Decimal::ZERO;
    }
    accrued(full, period, to, currency, rounding) - accrued(full, period, from, currency, rounding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeDelta};
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    fn period(start: &str, end: &str) -> Period {
        Period {
            start: start.parse::<NaiveDate>().unwrap(),
            end: end.parse::<NaiveDate>().unwrap(),
        }
    }

    /// Stripe, "Prorations" (stripe.com/docs/billing/subscriptions/
    /// prorations): an upgrade from 10 USD to 20 USD per month halfway
    /// through the period bills 5 USD more: −5 for the unused time on the
    /// old price, +10 for the rest on the new one. Autumn, "Proration"
    /// (docs.useautumn.com/documentation/modelling-pricing/proration): 20
    /// to 50 USD halfway charges 15. November 2026 has 30 days; halfway is
    /// the 16th at 00:00.
    #[test]
    fn published_mid_period_upgrades() {
        let p = period("2026-11-01", "2026-12-01");
        let half = p.start_time() + TimeDelta::days(15);
        let (usd, r) = (Currency::USD, Rounding::default());
        let rest = |price| prorate(price, &p, half, p.end_time(), usd, r);
        assert_eq!((rest(dec!(10)), rest(dec!(20))), (dec!(5), dec!(10)));
        assert_eq!(rest(dec!(20)) - rest(dec!(10)), dec!(5));
        assert_eq!(rest(dec!(50)) - rest(dec!(20)), dec!(15));
        // A whole period at a price is the price itself.
        let whole = prorate(dec!(99), &p, p.start_time(), p.end_time(), usd, r);
        assert_eq!(whole, dec!(99));
    }

    proptest! {
        /// Prorated pieces over any split of a period sum to exactly the
        /// rounded full price, and none is negative.
        #[test]
        fn pieces_sum_to_the_whole(
            cents in 0i64..100_000_000,
            scale in 0u32..6,
            cuts in proptest::collection::vec(0i64..2_678_400, 0..6),
            currency in proptest::sample::select(vec!["USD", "JPY", "BHD"]),
        ) {
            let currency = Currency::from_code(currency).unwrap();
            let full = Decimal::new(cents, scale);
            let p = period("2027-01-31", "2027-02-28");
            let len = p.length().num_seconds();
            let mut points: Vec<DateTime<Utc>> = cuts.iter()
                .map(|c| p.start_time() + TimeDelta::seconds(c % len))
                .collect();
            points.push(p.start_time());
            points.push(p.end_time());
            points.sort();
            let r = Rounding::default();
            let pieces: Vec<Decimal> = points.windows(2)
                .map(|w| prorate(full, &p, w[0], w[1], currency, r))
                .collect();
            prop_assert!(pieces.iter().all(|x| *x >= Decimal::ZERO));
            prop_assert_eq!(pieces.iter().sum::<Decimal>(), r.round(full, currency));
        }
    }
}

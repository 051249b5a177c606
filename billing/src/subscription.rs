//! Subscription changes that bill something: a plan change inside a period
//! credits the old fee's unused time and charges the new fee's rest,
//! prorated by elapsed time (see `proration`). The subscription's states
//! and their legal transitions are `dotmac_schema::lifecycle`'s.

use chrono::{DateTime, Utc};
use dotmac_schema::money::{Currency, Rounding};
use rust_decimal::Decimal;

use crate::invoice::{LineDraft, LineKind};
use crate::period::Period;
use crate::proration::prorate;

/// The lines a plan change at `at` adds to the period's invoice: a credit
/// for the old fee's unused time and a charge for the new fee's rest. The
/// period's own recurring line (billed in advance at the old fee) stays.
pub fn plan_change_lines(
    period: &Period,
    at: DateTime<Utc>,
    old_fee: Decimal,
    new_fee: Decimal,
    currency: Currency,
    rounding: Rounding,
) -> Vec<LineDraft> {
    let end = period.end_time();
    let credit = prorate(old_fee, period, at, end, currency, rounding);
    let charge = prorate(new_fee, period, at, end, currency, rounding);
    vec![
        LineDraft {
            description: format!("Unused time on the previous plan from {}", at.date_naive()),
            kind: LineKind::Proration,
            amount: -credit,
        },
        LineDraft {
            description: format!("Remaining time on the new plan from {}", at.date_naive()),
            kind: LineKind::Proration,
            amount: charge,
        },
    ]
}

/// The credit for cancelling at `at` a period already billed at `fee`.
pub fn cancellation_credit(
    period: &Period,
    at: DateTime<Utc>,
    fee: Decimal,
    currency: Currency,
    rounding: Rounding,
) -> LineDraft {
    LineDraft {
        description: format!("Unused time after cancellation on {}", at.date_naive()),
        kind: LineKind::Proration,
        amount: -prorate(fee, period, at, period.end_time(), currency, rounding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{NaiveDate, TimeDelta};
    use dotmac_schema::lifecycle::SubscriptionEvent as E;
    use dotmac_schema::lifecycle::SubscriptionState as S;
    use proptest::prelude::*;
    use rust_decimal_macros::dec;

    const EVENTS: [E; 6] = [
        E::TrialEnded,
        E::InvoiceOverdue,
        E::OverduePaid,
        E::Pause,
        E::Resume,
        E::Cancel,
    ];

    #[test]
    fn the_listed_transitions() {
        assert_eq!(S::Trial.on(E::TrialEnded), Ok(S::Active));
        assert_eq!(S::Active.on(E::InvoiceOverdue), Ok(S::PastDue));
        assert_eq!(S::PastDue.on(E::OverduePaid), Ok(S::Active));
        assert_eq!(S::Active.on(E::Pause), Ok(S::Paused));
        assert_eq!(
            S::Cancelled.on(E::Resume).unwrap_err().to_string(),
            "state: a Cancelled subscription cannot take Resume"
        );
        assert!(S::Paused.on(E::InvoiceOverdue).is_err());
        for state in [S::Trial, S::Active, S::PastDue, S::Paused, S::Cancelled] {
            assert_eq!(S::parse(state.as_str()), Some(state));
            let serialized = serde_json::to_value(state).unwrap();
            assert_eq!(
                serialized.as_str(),
                Some(state.as_str()),
                "stored as serialized"
            );
        }
        assert_eq!(S::parse("nope"), None);
    }

    fn period() -> Period {
        Period {
            start: NaiveDate::from_ymd_opt(2026, 11, 1).unwrap(),
            end: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        }
    }

    #[test]
    fn an_upgrade_and_a_cancellation() {
        let p = period();
        let at = p.start_time() + TimeDelta::days(15);
        let lines = plan_change_lines(
            &p,
            at,
            dec!(99),
            dec!(299),
            Currency::USD,
            Rounding::default(),
        );
        let amounts: Vec<_> = lines.iter().map(|l| l.amount).collect();
        assert_eq!(amounts, [dec!(-49.50), dec!(149.50)]);
        let credit = cancellation_credit(&p, at, dec!(99), Currency::USD, Rounding::default());
        assert_eq!(credit.amount, dec!(-49.50));
    }

    proptest! {
        /// Cancelled is final, only listed transitions happen, and no
        /// sequence of events leaves the five states.
        #[test]
        fn cancelled_is_final(events in proptest::collection::vec(0usize..6, 0..40)) {
            let mut state = S::Trial;
            for i in events {
                let event = EVENTS[i];
                match state.on(event) {
                    Ok(next) => {
                        prop_assert!(state != S::Cancelled);
                        state = next;
                    }
                    Err(e) => prop_assert_eq!(e.from, state),
                }
            }
            for event in EVENTS {
                if state == S::Cancelled {
                    prop_assert!(state.on(event).is_err());
                }
            }
        }

        /// Any chain of plan changes within a period bills, with the
        /// period's advance fee, exactly the time spent on each plan.
        #[test]
        fn plan_changes_bill_each_plan_for_its_time(
            fees in proptest::collection::vec(0i64..100_000, 2..5),
            cuts in proptest::collection::vec(1i64..2_591_999, 1..4),
        ) {
            let p = period();
            let (usd, r) = (Currency::USD, Rounding::default());
            let fees: Vec<Decimal> = fees.iter().map(|c| Decimal::new(*c, 2)).collect();
            let mut cuts: Vec<DateTime<Utc>> = cuts.iter().map(|s| p.start_time() + TimeDelta::seconds(*s)).collect();
            cuts.sort();
            cuts.dedup();
            let n = cuts.len().min(fees.len() - 1);
            let mut billed = fees[0];
            for (i, at) in cuts.iter().take(n).enumerate() {
                billed += plan_change_lines(&p, *at, fees[i], fees[i + 1], usd, r).iter().map(|l| l.amount).sum::<Decimal>();
            }
            let mut bounds = vec![p.start_time()];
            bounds.extend(cuts.iter().take(n).copied());
            bounds.push(p.end_time());
            let expected: Decimal = bounds.windows(2).enumerate()
                .map(|(i, w)| prorate(fees[i], &p, w[0], w[1], usd, r)).sum();
            prop_assert_eq!(billed, expected);
        }
    }
}

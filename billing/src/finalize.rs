//! What finalizing an invoice decides: its number, printed
//! from the issuer's gapless sequence; its due date, net 30; and how much of
//! the tenant's prepaid credit it uses. The store draws the numbers and
//! writes the rows; the rules are here.

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;

/// Days from finalization to the due date.
pub const NET_DAYS: i64 = 30;

/// An invoice number as printed: the issuer and the sequence's `n`, six
/// digits at least (`DM-000042`).
pub fn invoice_number(issuer: &str, n: i64) -> String {
    format!("{issuer}-{n:06}")
}

/// When an invoice finalized at `finalized_at` is due.
pub fn due_at(finalized_at: DateTime<Utc>) -> DateTime<Utc> {
    finalized_at + TimeDelta::days(NET_DAYS)
}

/// How much of a prepaid `balance` a just-finalized invoice owing `due`
/// uses: all it can, never more than it owes, never a negative amount.
pub fn prepaid_credit_used(balance: Decimal, due: Decimal) -> Decimal {
    balance.min(due).max(Decimal::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn numbers_and_due_dates() {
        assert_eq!(invoice_number("DM", 42), "DM-000042");
        assert_eq!(invoice_number("DM-CN", 1_234_567), "DM-CN-1234567");
        let at: DateTime<Utc> = "2026-11-28T00:00:00Z".parse().unwrap();
        assert_eq!(
            due_at(at),
            "2026-12-28T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    proptest! {
        /// Credit used is within both the balance and what is owed, and
        /// leaves neither negative.
        #[test]
        fn credit_used_is_bounded_by_balance_and_due(
            balance in -100_000i64..100_000, due in 0i64..100_000
        ) {
            let (balance, due) = (Decimal::new(balance, 2), Decimal::new(due, 2));
            let used = prepaid_credit_used(balance, due);
            prop_assert!(used >= Decimal::ZERO);
            prop_assert!(used <= due);
            prop_assert!(used <= balance.max(Decimal::ZERO));
            prop_assert!(used == due || used == balance.max(Decimal::ZERO));
        }
    }
}

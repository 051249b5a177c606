//! Dunning: what a tenant's unpaid invoices call for on a given day.
//! An invoice is due net 30 after finalization; once past due the
//! subscription turns past_due, and after `suspend_after_days` more days
//! unpaid the tenant is suspended. Paying every overdue invoice reactivates.

use chrono::{DateTime, TimeDelta, Utc};

use crate::finalize;

/// One finalized invoice as dunning sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenInvoice {
    pub finalized_at: DateTime<Utc>,
    pub paid: bool,
}

impl OpenInvoice {
    pub fn due_at(&self) -> DateTime<Utc> {
        finalize::due_at(self.finalized_at)
    }
}

/// Where a tenant stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Nothing overdue.
    InGoodStanding,
    /// Something is overdue, suspension on the given day.
    PastDue { suspend_at: DateTime<Utc> },
    /// Overdue longer than the grace: suspend.
    Suspend,
}

/// The tenant's standing at `now`, from the oldest unpaid overdue invoice.
pub fn standing(invoices: &[OpenInvoice], now: DateTime<Utc>, suspend_after_days: i64) -> Standing {
    let oldest_due = invoices
        .iter()
        .filter(|i| !i.paid && i.due_at() <= now)
        .map(OpenInvoice::due_at)
        .min();
    match oldest_due {
        None => Standing::InGoodStanding,
        Some(due) => {
            let suspend_at = due + TimeDelta::days(suspend_after_days);
            if now >= suspend_at {
                Standing::Suspend
            } else {
                Standing::PastDue { suspend_at }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(days: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::days(days)
    }

    #[test]
    fn net_30_then_suspension() {
        let inv = OpenInvoice {
            finalized_at: at(0),
            paid: false,
        };
        assert_eq!(standing(&[inv], at(29), 14), Standing::InGoodStanding);
        assert_eq!(
            standing(&[inv], at(30), 14),
            Standing::PastDue { suspend_at: at(44) }
        );
        assert_eq!(standing(&[inv], at(44), 14), Standing::Suspend);
        let paid = OpenInvoice { paid: true, ..inv };
        assert_eq!(standing(&[paid], at(100), 14), Standing::InGoodStanding);
    }

    proptest! {
        /// Paying every invoice always restores good standing, and the
        /// standing never improves with time while nothing is paid.
        #[test]
        fn paying_restores_and_time_only_worsens(
            finalized in proptest::collection::vec(0i64..200, 1..6),
            now in 0i64..400, later in 0i64..100, grace in 0i64..60,
        ) {
            let open: Vec<OpenInvoice> = finalized.iter().map(|d| OpenInvoice { finalized_at: at(*d), paid: false }).collect();
            let paid: Vec<OpenInvoice> = open.iter().map(|i| OpenInvoice { paid: true, ..*i }).collect();
            prop_assert_eq!(standing(&paid, at(now), grace), Standing::InGoodStanding);
            let rank = |s: Standing| match s { Standing::InGoodStanding => 0, Standing::PastDue { .. } => 1, Standing::Suspend => 2 };
            prop_assert!(rank(standing(&open, at(now + later), grace)) >= rank(standing(&open, at(now), grace)));
        }
    }
}

//! The verifier's sense of time: the latest instant it has seen. A clock
//! set backwards can neither bring back an expired licence nor reopen a
//! trial; it is answered with the high-water mark and reported.

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds a clock may step back without being called rolled back (NTP
/// corrections, a VM resumed).
pub const TOLERANCE_SECS: i64 = 300;

/// The latest time seen, in Unix seconds.
#[derive(Debug, Default)]
pub struct HighWater {
    seen: AtomicI64,
}

/// One reading of the clock through the high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// The time to judge by: the clock's, or the mark when the clock is behind it.
    pub now: i64,
    /// How far behind the mark the clock was, when more than the tolerance.
    pub rolled_back_by: Option<i64>,
}

impl HighWater {
    /// Starts from `seen` (kept from an earlier run; 0 for none).
    pub fn new(seen: i64) -> HighWater {
        HighWater {
            seen: AtomicI64::new(seen),
        }
    }

    /// Reads `clock_now` through the mark, raising the mark to it.
    pub fn observe(&self, clock_now: i64) -> Reading {
        let before = self.seen.fetch_max(clock_now, Ordering::AcqRel);
        let behind = before.saturating_sub(clock_now);
        Reading {
            now: before.max(clock_now),
            rolled_back_by: (behind > TOLERANCE_SECS).then_some(behind),
        }
    }

    /// The latest time seen.
    pub fn seen(&self) -> i64 {
        self.seen.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_set_back_is_reported_and_judged_by_the_mark() {
        let mark = HighWater::new(0);
        assert_eq!(mark.observe(1_000_000).rolled_back_by, None);
        let back = mark.observe(1_000_000 - 86_400);
        assert_eq!(back.now, 1_000_000);
        assert_eq!(back.rolled_back_by, Some(86_400));
        // Within the tolerance: not a rollback, still judged by the mark.
        let nudged = mark.observe(1_000_000 - TOLERANCE_SECS);
        assert_eq!((nudged.now, nudged.rolled_back_by), (1_000_000, None));
        assert_eq!(mark.observe(1_000_100).now, 1_000_100);
        assert_eq!(mark.seen(), 1_000_100);
    }
}

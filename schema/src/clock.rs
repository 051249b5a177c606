//! Where "now" comes from. Code that decides by the date (billing periods,
//! token expiry, lockouts, late events) asks an injected [`Clock`] instead
//! of the wall clock, so a test sets the date it needs and passes on any
//! day. Production runs on [`SystemClock`].

use std::sync::{Arc, Mutex};

use chrono::{DateTime, TimeDelta, Utc};

/// The current time, as the code under it should see it.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that stands still until it is set or advanced (tests, and
/// commands run "as of" a given time).
#[derive(Debug, Clone)]
pub struct ManualClock {
    at: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> ManualClock {
        ManualClock {
            at: Arc::new(Mutex::new(at)),
        }
    }

    /// What the clock reads (without the [`Clock`] trait in scope).
    pub fn now(&self) -> DateTime<Utc> {
        *self.at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on the clock reads `at`.
    pub fn set(&self, at: DateTime<Utc>) {
        *self.at.lock().unwrap_or_else(|p| p.into_inner()) = at;
    }

    /// Moves the clock forward (or back, for a negative `by`).
    pub fn advance(&self, by: TimeDelta) {
        let mut at = self.at.lock().unwrap_or_else(|p| p.into_inner());
        *at += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        ManualClock::now(self)
    }
}

/// The clock as it is shared: one per process, handed to what needs it.
pub type SharedClock = Arc<dyn Clock>;

/// The wall clock, shared.
pub fn system() -> SharedClock {
    Arc::new(SystemClock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start: DateTime<Utc> = "2026-11-16T12:00:00Z".parse().unwrap();
        let clock = ManualClock::new(start);
        let shared: SharedClock = Arc::new(clock.clone());
        assert_eq!(shared.now(), start);
        clock.advance(TimeDelta::days(20));
        assert_eq!(
            shared.now(),
            "2026-12-06T12:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        clock.set(start);
        assert_eq!(shared.now(), start);
    }
}

//! Raw event retention: `usage_raw` is partitioned in 30-day buckets of
//! event time, and a bucket whose whole range is older than the cutoff is
//! dropped (`ALTER TABLE ... DROP PARTITION`, 18.16 has no TTL). The cutoff
//! is the configured age, but never later than the dedupe horizon (a new
//! owner of a partition reads its keys back from raw rows) nor the start of
//! the last period that may still be billed, adjusted or reconciled: the
//! calendar month before the one `now - grace` falls in.

use chrono::{DateTime, Datelike, Months, NaiveDate, TimeDelta, Utc};

use crate::clickhouse::ClickHouseError;
use crate::store::UsageStore;

/// The width of one `usage_raw` partition, in microseconds of event time
/// (`PARTITION BY intDiv(event_time_us, RAW_BUCKET_US)`).
pub const RAW_BUCKET_US: i64 = 2_592_000_000_000;

/// What retention keeps.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Raw events older than this may go.
    pub keep: TimeDelta,
    pub dedupe_horizon: TimeDelta,
    /// Drafts become final this long after their period (billing's grace).
    pub grace: TimeDelta,
}

impl Retention {
    /// Raw events timed before this instant may be dropped.
    pub fn raw_cutoff(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let billed_from = open_periods_start(now - self.grace);
        (now - self.keep)
            .min(now - self.dedupe_horizon)
            .min(billed_from)
    }
}

/// 00:00 UTC on the first day of the month before `at`'s month: the
/// earliest period a close (or its late-usage adjustment) may still read.
fn open_periods_start(at: DateTime<Utc>) -> DateTime<Utc> {
    let first = NaiveDate::from_ymd_opt(at.year(), at.month(), 1)
        .and_then(|d| d.checked_sub_months(Months::new(1)))
        .unwrap_or(NaiveDate::MIN);
    first.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Drops every `usage_raw` bucket that ends at or before `cutoff`; returns
/// the buckets dropped.
pub async fn drop_expired_raw(
    store: &UsageStore,
    cutoff: DateTime<Utc>,
) -> Result<Vec<i64>, ClickHouseError> {
    let cutoff_us = cutoff.timestamp_micros();
    let mut dropped = Vec::new();
    for bucket in store.raw_buckets().await? {
        if bucket.saturating_add(1).saturating_mul(RAW_BUCKET_US) <= cutoff_us {
            store.drop_raw_bucket(bucket).await?;
            tracing::info!(bucket, "raw events past retention dropped");
            dropped.push(bucket);
        }
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn days(n: i64) -> TimeDelta {
        TimeDelta::days(n)
    }

    #[test]
    fn the_cutoff_spares_the_previous_month_and_the_horizon() {
        let r = Retention {
            keep: days(1),
            dedupe_horizon: days(32),
            grace: days(3),
        };
        // 2 December, 3 days of grace: November is in its grace and its close
        // adjusts and reconciles October: nothing from 1 October on may go.
        let now: DateTime<Utc> = "2026-12-02T10:00:00Z".parse().unwrap();
        assert_eq!(
            r.raw_cutoff(now),
            "2026-10-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        let r = Retention {
            keep: days(400),
            ..r
        };
        assert_eq!(r.raw_cutoff(now), now - days(400));
    }

    proptest! {
        /// Whatever the settings and the date, nothing inside the dedupe
        /// horizon, the open or grace period, or the kept age is dropped.
        #[test]
        fn nothing_still_needed_is_before_the_cutoff(
            now_s in 0i64..4_000_000_000,
            keep in 1i64..2000,
            horizon in 1i64..367,
            grace in 0i64..61,
        ) {
            let now = DateTime::from_timestamp(now_s, 0).unwrap();
            let r = Retention { keep: days(keep), dedupe_horizon: days(horizon), grace: days(grace) };
            let cutoff = r.raw_cutoff(now);
            prop_assert!(cutoff <= now - days(keep));
            prop_assert!(cutoff <= now - days(horizon));
            let graced = now - days(grace);
            let open = open_periods_start(graced);
            prop_assert!(cutoff <= open);
            // `open` is midnight on the first of the month before `graced`'s.
            prop_assert_eq!((open.day(), open.timestamp() % 86_400), (1, 0));
            prop_assert!(open <= graced - days(28) && open > graced - days(63));
        }
    }
}

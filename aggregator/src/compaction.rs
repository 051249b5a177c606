//! Compaction of rollup parts: every flush adds a part per (tenant, meter,
//! window, group) it touched, so without compaction a read over a long
//! range costs as many parts as flushes wrote. A 30-day bucket of windows
//! is closed once every window in it ended before the dedupe horizon (no
//! event for it can be accepted any more); its committed parts are merged
//! by the merge law into one row per key, committed by one row in
//! `usage_compactions`, and the bucket's parts are then dropped. Readers
//! ([`crate::store::committed_rollups`]) see the same totals before and
//! after.

use chrono::{DateTime, TimeDelta, Utc};

use crate::rows::RollupPartRow;
use crate::store::{merge_parts, ReadError, UsageStore, ROLLUP_BUCKET_SECS};

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compacted {
    pub bucket: i64,
    pub parts: u64,
    pub rows: u64,
}

/// A flush folds with the clock of its start and writes a little later:
/// windows this close to the horizon are left for the next run.
const IN_FLIGHT: TimeDelta = TimeDelta::hours(1);

/// Buckets whose windows all end before this instant are closed.
pub fn closed_before(now: DateTime<Utc>, dedupe_horizon: TimeDelta) -> DateTime<Utc> {
    now - dedupe_horizon - IN_FLIGHT
}

/// The parts of `parts` merged into one row per key under `compaction_id`:
/// what a compacted bucket holds. Reads merge these to the same states as
/// the parts themselves (the merge law is associative and commutative).
pub fn compact_rows(
    parts: Vec<RollupPartRow>,
    compaction_id: &str,
) -> Result<Vec<RollupPartRow>, ReadError> {
    Ok(merge_parts(parts)?
        .iter()
        .map(|(k, s)| RollupPartRow::new(k, s, 0, compaction_id))
        .collect())
}

/// Compacts every closed bucket that has parts and no compaction yet, and
/// drops the parts of every compacted bucket. A bucket whose parts cannot
/// be merged (a malformed part) is left as it is, logged, and the others
/// go on.
pub async fn compact_closed(
    store: &UsageStore,
    now: DateTime<Utc>,
    dedupe_horizon: TimeDelta,
) -> Result<Vec<Compacted>, ReadError> {
    let closed = closed_before(now, dedupe_horizon).timestamp();
    let compacted = store.compacted_buckets().await?;
    let mut done = Vec::new();
    for bucket in store.rollup_buckets().await? {
        if bucket.saturating_add(1).saturating_mul(ROLLUP_BUCKET_SECS) > closed {
            continue;
        }
        if !compacted.contains(&bucket) {
            let parts = store.committed_bucket_parts(bucket).await?;
            let count = parts.len() as u64;
            let id = format!("compaction-{}", uuid::Uuid::now_v7().simple());
            let rows = match compact_rows(parts, &id) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(bucket, error = %e, "bucket not compacted: its parts do not merge");
                    continue;
                }
            };
            store.commit_compaction(bucket, &id, count, &rows).await?;
            tracing::info!(
                bucket,
                parts = count,
                rows = rows.len(),
                "rollup bucket compacted"
            );
            done.push(Compacted {
                bucket,
                parts: count,
                rows: rows.len() as u64,
            });
        }
        // Readers ignore a compacted bucket's parts: they can go (a run
        // that died after its commit drops them on the next).
        store.drop_rollup_bucket(bucket).await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dotmac_schema::usage::{RollupKey, RollupState};
    use proptest::prelude::*;
    use rust_decimal::Decimal;

    fn state(kind: u8, v: i64, id: u8) -> RollupState {
        let d = Decimal::new(v, 3);
        match kind % 6 {
            0 => RollupState::Sum(d),
            1 => RollupState::Count(v.unsigned_abs() % 1000),
            2 => RollupState::Min(d),
            3 => RollupState::Max(d),
            4 => RollupState::Unique([format!("u{}", v % 7)].into_iter().collect()),
            _ => RollupState::Latest {
                time: DateTime::from_timestamp(1_790_000_000 + v % 100, 0).unwrap(),
                id: format!("e{id}"),
                value: d,
            },
        }
    }

    proptest! {
        /// A compacted bucket reads as its parts did, whatever the parts:
        /// every aggregation, keys repeated across many flushes.
        #[test]
        fn compacted_rows_read_like_their_parts(
            parts in prop::collection::vec((0u8..6, 0u8..3, 0i64..4, 0u8..2, -100_000i64..100_000, 0u8..50), 0..80)
        ) {
            let rows: Vec<RollupPartRow> = parts
                .iter()
                .enumerate()
                .map(|(i, (kind, tenant, window, group, v, id))| {
                    let key = RollupKey {
                        tenant: format!("t{tenant}"),
                        // One aggregation per meter, as meters are.
                        meter: format!("m{kind}"),
                        window_start: DateTime::from_timestamp(1_790_000_000 + window * 3600, 0).unwrap(),
                        group: vec![("g".into(), format!("{group}"))],
                    };
                    RollupPartRow::new(&key, &state(*kind, *v, *id), (i % 3) as i32, &format!("w{i}"))
                })
                .collect();
            let before = merge_parts(rows.clone()).unwrap();
            let compacted = compact_rows(rows, "c1").unwrap();
            prop_assert!(compacted.len() == before.len());
            prop_assert_eq!(merge_parts(compacted).unwrap(), before);
        }
    }

    #[test]
    fn a_bucket_closes_only_past_the_horizon() {
        let now: DateTime<Utc> = "2026-12-02T00:00:00Z".parse().unwrap();
        assert_eq!(
            closed_before(now, TimeDelta::days(32)),
            "2026-10-30T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}

//! The aggregator's fold of one partition's pending records into a batch:
//! a verdict per record (accepted, duplicate or dead-lettered with a
//! reason), the raw rows to keep, and the rollup states per window. Pure and
//! deterministic: the same records, catalog and committed dedupe state give
//! the same batch, which is what makes a replay after a crash exact.

use std::collections::HashSet;

use rustc_hash::FxHashMap;

use chrono::{DateTime, TimeDelta, Utc};
use dotmac_schema::usage::{RollupKey, RollupState, UsageEvent};

use crate::catalog::{Catalog, METERED_STATES};
use crate::dedupe::{DedupeKey, DedupeSet};
use crate::rows::{RawRow, RollupPartRow};

/// One Kafka record, owned while it waits for its flush.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    /// When the broker stamped it (microseconds), for latency figures.
    pub received_at_us: i64,
}

/// A record that cannot be counted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub reason: String,
}

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accepted,
    Duplicate,
    DeadLettered,
}

/// Event times the fold accepts, relative to `now`.
#[derive(Debug, Clone, Copy)]
pub struct TimeLimits {
    pub now: DateTime<Utc>,
    /// Events older than this cannot be deduplicated any more.
    pub dedupe_horizon: TimeDelta,
    /// Clock skew tolerated for events stamped in the future.
    pub max_future: TimeDelta,
}

impl TimeLimits {
    pub fn new(now: DateTime<Utc>, dedupe_horizon: TimeDelta) -> TimeLimits {
        TimeLimits {
            now,
            dedupe_horizon,
            max_future: TimeDelta::hours(24),
        }
    }

    pub fn horizon_start(&self) -> DateTime<Utc> {
        self.now - self.dedupe_horizon
    }
}

/// One partition's share of a flush.
#[derive(Debug, Default)]
pub struct PartitionBatch {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub events: u32,
    pub accepted: u32,
    pub duplicates: u32,
    pub raw: Vec<RawRow>,
    /// Fx-hashed: the keys are ours (not attacker-chosen for flooding a
    /// shared table across tenants), and SipHash cost a third of the fold.
    pub rollups: FxHashMap<RollupKey, RollupState>,
    pub dead: Vec<DeadLetter>,
    /// Keys this batch counts, entered into the dedupe set only after the
    /// batch is durably written.
    pub new_keys: Vec<(DedupeKey, i64)>,
    seen: HashSet<DedupeKey>,
}

impl PartitionBatch {
    pub fn new(partition: i32) -> PartitionBatch {
        PartitionBatch {
            partition,
            first_offset: i64::MAX,
            last_offset: i64::MIN,
            ..PartitionBatch::default()
        }
    }

    fn dead_letter(&mut self, record: &Record, reason: String) -> Verdict {
        self.dead.push(DeadLetter {
            partition: record.partition,
            offset: record.offset,
            key: record.key.clone(),
            payload: record.payload.clone(),
            reason,
        });
        Verdict::DeadLettered
    }

    /// Folds one record in.
    pub fn add(
        &mut self,
        record: &Record,
        catalog: &Catalog,
        dedupe: &DedupeSet,
        limits: &TimeLimits,
    ) -> Verdict {
        self.events += 1;
        self.first_offset = self.first_offset.min(record.offset);
        self.last_offset = self.last_offset.max(record.offset);

        let tenant = match record.key.as_deref().map(std::str::from_utf8) {
            Some(Ok(t)) if !t.is_empty() => t,
            Some(Err(_)) => {
                return self.dead_letter(record, "key: the tenant id is not UTF-8".into())
            }
            _ => {
                return self.dead_letter(record, "key: a record's key must be its tenant id".into())
            }
        };
        match catalog.tenant_state(tenant) {
            None => return self.dead_letter(record, format!("key: unknown tenant {tenant:?}")),
            Some(state) if !METERED_STATES.contains(&state) => {
                return self.dead_letter(
                    record,
                    format!("key: tenant {tenant} is {state}, not active"),
                )
            }
            Some(_) => {}
        }
        let payload = record.payload.as_deref().unwrap_or_default();
        let event = match UsageEvent::decode(payload) {
            Ok(e) => e,
            Err(e) => return self.dead_letter(record, e.to_string()),
        };
        if event.time < limits.horizon_start() {
            return self.dead_letter(
                record,
                format!(
                    "time: older than the dedupe horizon ({} days), so it could not be counted exactly once",
                    limits.dedupe_horizon.num_days()
                ),
            );
        }
        if event.time > limits.now + limits.max_future {
            return self.dead_letter(record, "time: more than 24 hours in the future".into());
        }
        let key = DedupeKey::new(tenant, &event.source, &event.id);
        if dedupe.contains(&key) || self.seen.contains(&key) {
            self.duplicates += 1;
            return Verdict::Duplicate;
        }

        // Every meter's contribution is computed and checked before any is
        // merged: an event counts in all its meters or in none.
        let mut contributions = Vec::new();
        for meter in catalog.meters_for(&event.event_type) {
            let c = match meter.contribution(&event) {
                Ok(c) => c,
                Err(e) => return self.dead_letter(record, format!("meter {}: {e}", meter.slug)),
            };
            let rollup_key = RollupKey {
                tenant: tenant.to_owned(),
                meter: meter.slug.clone(),
                window_start: c.window_start,
                group: c.group,
            };
            if let Some(existing) = self.rollups.get(&rollup_key) {
                if let Err(e) = existing.check_merge(&c.state) {
                    return self.dead_letter(record, format!("meter {}: {e}", meter.slug));
                }
            }
            contributions.push((rollup_key, c.state));
        }
        for (rollup_key, state) in contributions {
            match self.rollups.get_mut(&rollup_key) {
                // Checked above; a failure here would be a broken merge law.
                Some(existing) => {
                    if let Err(e) = existing.merge(state) {
                        tracing::error!(error = %e, "a checked merge failed");
                    }
                }
                None => {
                    self.rollups.insert(rollup_key, state);
                }
            }
        }

        let time_secs = event.time.timestamp();
        self.seen.insert(key);
        self.new_keys.push((key, time_secs));
        self.accepted += 1;
        self.raw.push(RawRow {
            tenant: tenant.to_owned(),
            event_time_us: event.time.timestamp_micros(),
            partition: record.partition,
            offset: record.offset,
            write_id: String::new(),
            dedupe_key: hex::encode(key.0),
            event_id: event.id,
            source: event.source,
            event_type: event.event_type,
            subject: event.subject.unwrap_or_default(),
            payload: String::from_utf8_lossy(payload).into_owned(),
            received_at_us: record.received_at_us,
        });
        Verdict::Accepted
    }

    pub fn dead_lettered(&self) -> u32 {
        self.dead.len() as u32
    }

    /// The rollup part rows of this batch under `write_id`.
    pub fn part_rows(&self, write_id: &str) -> Vec<RollupPartRow> {
        self.rollups
            .iter()
            .map(|(k, s)| RollupPartRow::new(k, s, self.partition, write_id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dotmac_schema::usage::{Aggregation, Meter, Window};
    use proptest::prelude::*;
    use rust_decimal::Decimal;
    use serde_json::json;

    fn catalog() -> Catalog {
        Catalog::new(
            [
                ("ten_a".to_owned(), "active".to_owned()),
                ("ten_s".to_owned(), "suspended".to_owned()),
            ],
            vec![
                Meter {
                    slug: "bytes".into(),
                    event_type: "session".into(),
                    aggregation: Aggregation::Sum,
                    value_path: Some("bytes".into()),
                    group_by: vec![],
                    window: Window::Hour,
                },
                Meter {
                    slug: "sessions".into(),
                    event_type: "session".into(),
                    aggregation: Aggregation::Count,
                    value_path: None,
                    group_by: vec![],
                    window: Window::Day,
                },
            ],
        )
    }

    fn record(offset: i64, key: Option<&str>, payload: serde_json::Value) -> Record {
        Record {
            partition: 0,
            offset,
            key: key.map(|k| k.as_bytes().to_vec()),
            payload: Some(payload.to_string().into_bytes()),
            received_at_us: 0,
        }
    }

    fn event(id: &str, bytes: serde_json::Value) -> serde_json::Value {
        json!({"specversion": "1.0", "id": id, "source": "r1", "type": "session",
               "time": "2026-11-28T10:00:00Z", "data": {"bytes": bytes}})
    }

    fn limits() -> TimeLimits {
        TimeLimits::new("2026-11-28T12:00:00Z".parse().unwrap(), TimeDelta::days(32))
    }

    #[test]
    fn verdicts_name_their_reason() {
        let (c, d, l) = (catalog(), DedupeSet::default(), limits());
        let mut b = PartitionBatch::new(0);
        assert_eq!(
            b.add(&record(0, Some("ten_a"), event("1", json!(5))), &c, &d, &l),
            Verdict::Accepted
        );
        assert_eq!(
            b.add(&record(1, Some("ten_a"), event("1", json!(5))), &c, &d, &l),
            Verdict::Duplicate
        );
        let cases = [
            (
                record(2, None, event("2", json!(1))),
                "key: a record's key must be its tenant id",
            ),
            (
                record(3, Some("ten_x"), event("3", json!(1))),
                "key: unknown tenant \"ten_x\"",
            ),
            (
                record(4, Some("ten_s"), event("4", json!(1))),
                "key: tenant ten_s is suspended, not active",
            ),
            (
                record(5, Some("ten_a"), event("5", json!("lots"))),
                "meter bytes: data.bytes: must be a number or a numeric string",
            ),
            (
                record(6, Some("ten_a"), json!({"specversion": "1.0"})),
                "id: is required",
            ),
        ];
        for (r, reason) in cases {
            assert_eq!(b.add(&r, &c, &d, &l), Verdict::DeadLettered);
            assert_eq!(b.dead.last().unwrap().reason, reason);
        }
        let mut old = event("7", json!(1));
        old["time"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(
            b.add(&record(7, Some("ten_a"), old), &c, &d, &l),
            Verdict::DeadLettered
        );
        assert!(b
            .dead
            .last()
            .unwrap()
            .reason
            .starts_with("time: older than the dedupe horizon"));
        assert_eq!(
            (b.events, b.accepted, b.duplicates, b.dead_lettered()),
            (8, 1, 1, 6)
        );
        assert_eq!((b.first_offset, b.last_offset), (0, 7));
        // A bad value for one meter keeps the event out of every meter.
        assert_eq!(b.rollups.len(), 2);
        assert!(b.rollups.values().any(|s| *s == RollupState::Count(1)));
    }

    #[test]
    fn committed_keys_are_duplicates() {
        let (c, l) = (catalog(), limits());
        let mut d = DedupeSet::default();
        d.insert(DedupeKey::new("ten_a", "r1", "1"), 0);
        let mut b = PartitionBatch::new(0);
        assert_eq!(
            b.add(&record(0, Some("ten_a"), event("1", json!(5))), &c, &d, &l),
            Verdict::Duplicate
        );
        assert!(b.raw.is_empty() && b.rollups.is_empty());
    }

    proptest! {
        /// Splitting a stream into batches at any points, committing each
        /// batch's keys before the next, counts the same as one batch.
        #[test]
        fn any_batching_counts_like_one_batch(
            ids in proptest::collection::vec((0u32..30, 0u64..1000), 1..80),
            cuts in proptest::collection::vec(0usize..80, 0..5)
        ) {
            let (c, l) = (catalog(), limits());
            let records: Vec<Record> = ids.iter().enumerate()
                .map(|(i, (id, bytes))| record(i as i64, Some("ten_a"), event(&id.to_string(), json!(bytes))))
                .collect();
            let sum_of = |batches: &[PartitionBatch]| -> Decimal {
                batches.iter().flat_map(|b| b.rollups.iter())
                    .filter(|(k, _)| k.meter == "bytes").map(|(_, s)| s.value()).sum()
            };
            let whole = {
                let mut b = PartitionBatch::new(0);
                for r in &records { b.add(r, &c, &DedupeSet::default(), &l); }
                vec![b]
            };
            let mut sorted_cuts = cuts.clone();
            sorted_cuts.push(records.len());
            sorted_cuts.sort();
            let mut dedupe = DedupeSet::default();
            let mut batches = Vec::new();
            let mut start = 0;
            for cut in sorted_cuts {
                let cut = cut.min(records.len());
                if cut <= start { continue; }
                let mut b = PartitionBatch::new(0);
                for r in &records[start..cut] { b.add(r, &c, &dedupe, &l); }
                for (k, t) in &b.new_keys { dedupe.insert(*k, *t); }
                batches.push(b);
                start = cut;
            }
            prop_assert_eq!(sum_of(&batches), sum_of(&whole));
            let accepted: u32 = batches.iter().map(|b| b.accepted).sum();
            prop_assert_eq!(accepted, whole[0].accepted);
        }
    }
}

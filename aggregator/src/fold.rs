//! The aggregator's fold of one partition's pending records into a batch:
//! a verdict per record (accepted, duplicate or dead-lettered with a
//! reason), the raw rows to keep, and the rollup states per window. Pure and
//! deterministic: the same records, catalog and committed dedupe state give
//! the same batch, which is what makes a replay after a crash exact.

use std::borrow::Cow;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use dotmac_schema::usage::{EventView, RollupKey, RollupState};
use hashbrown::{Equivalent, HashMap};
use rustc_hash::FxBuildHasher;

use crate::catalog::{Catalog, METERED_STATES};
use crate::dedupe_set::DedupeSet;
use crate::rows::{PayloadText, RawRow, RollupPartRow};
use dotmac_ingest::dedupe::{DedupeKey, KeyHasher};

/// Rollup states by key. Fx-hashed: the keys are ours (not attacker-chosen
/// for flooding a shared table across tenants), and SipHash cost a third of
/// the fold. A hashbrown map, so an event's key is looked up borrowed and
/// owned strings are made only for a window's first event.
pub type RollupMap = HashMap<RollupKey, RollupState, FxBuildHasher>;

/// A [`RollupKey`] borrowed from the catalog and the event. Hashes exactly
/// as the owned key does (field by field, the group as a length-prefixed
/// sequence of pairs; property-tested), so it finds the owned entry.
struct RollupKeyRef<'a> {
    tenant: &'a str,
    meter: &'a str,
    window_start: DateTime<Utc>,
    names: &'a [String],
    values: &'a [Cow<'a, str>],
}

impl Hash for RollupKeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.tenant.hash(h);
        self.meter.hash(h);
        self.window_start.hash(h);
        h.write_usize(self.names.len());
        for (name, value) in self.names.iter().zip(self.values) {
            name.hash(h);
            value.hash(h);
        }
    }
}

impl Equivalent<RollupKey> for RollupKeyRef<'_> {
    fn equivalent(&self, key: &RollupKey) -> bool {
        self.tenant == key.tenant
            && self.meter == key.meter
            && self.window_start == key.window_start
            && self.names.len() == key.group.len()
            && self
                .names
                .iter()
                .zip(self.values)
                .zip(&key.group)
                .all(|((n, v), (kn, kv))| n == kn && v == kv)
    }
}

impl RollupKeyRef<'_> {
    fn to_owned_key(&self) -> RollupKey {
        RollupKey {
            tenant: self.tenant.to_owned(),
            meter: self.meter.to_owned(),
            window_start: self.window_start,
            group: self
                .names
                .iter()
                .cloned()
                .zip(self.values.iter().map(|v| v.clone().into_owned()))
                .collect(),
        }
    }
}

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
    /// On a partition that does not own its key: produced again to the
    /// owner, whose dedupe state decides (see [`PartitionBatch::forward`]).
    Forwarded,
}

/// A record moved to the partition that owns its key.
#[derive(Debug, Clone)]
pub struct Forward {
    pub to_partition: i32,
    pub from_partition: i32,
    pub from_offset: i64,
    pub key: Vec<u8>,
    pub payload: Option<Vec<u8>>,
    /// The broker's time of the original, kept on the copy.
    pub received_at_us: i64,
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
    pub rollups: RollupMap,
    pub dead: Vec<DeadLetter>,
    /// Records of keys another partition owns, to produce there.
    pub forwards: Vec<Forward>,
    /// Keys this batch counts, entered into the dedupe set only after the
    /// batch is durably written.
    pub new_keys: Vec<(DedupeKey, i64)>,
    seen: HashSet<DedupeKey, BuildHasherDefault<KeyHasher>>,
    /// The batch's repeated strings (tenants, sources, types), shared by
    /// its raw rows.
    interned: HashSet<Arc<str>, FxBuildHasher>,
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

    /// Empties the batch for another flush of `partition`, keeping the
    /// memory it grew: an aggregator reuses one batch per partition, so
    /// its large vectors and tables are not allocated (and their pages
    /// faulted in) again on every flush.
    pub fn reset(&mut self, partition: i32) {
        self.partition = partition;
        self.first_offset = i64::MAX;
        self.last_offset = i64::MIN;
        self.events = 0;
        self.accepted = 0;
        self.duplicates = 0;
        self.raw.clear();
        self.rollups.clear();
        self.dead.clear();
        self.forwards.clear();
        self.new_keys.clear();
        self.seen.clear();
        self.interned.clear();
    }

    /// A batch sized for `records` records: its per-event vectors and the
    /// set of keys seen never regrow (regrowth was a tenth of the fold).
    pub fn with_capacity(partition: i32, records: usize) -> PartitionBatch {
        let mut batch = PartitionBatch::new(partition);
        batch.raw.reserve(records);
        batch.new_keys.reserve(records);
        batch.seen.reserve(records);
        batch
    }

    /// A shared copy of `s`, made once per batch.
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.interned.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(s);
        self.interned.insert(shared.clone());
        shared
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

    /// Takes a record whose key `owner` owns instead of folding it here:
    /// dedupe state is per partition, so the same event produced twice
    /// with different partitioners (the HTTP intake, a Java client, a
    /// retry) must meet in one partition's set. The copy is folded, or
    /// found a duplicate, by the owner; copying twice (a replay after a
    /// crash) is harmless for the same reason.
    pub fn forward(&mut self, record: &Record, key: &[u8], owner: i32) -> Verdict {
        self.events += 1;
        self.first_offset = self.first_offset.min(record.offset);
        self.last_offset = self.last_offset.max(record.offset);
        self.forwards.push(Forward {
            to_partition: owner,
            from_partition: record.partition,
            from_offset: record.offset,
            key: key.to_vec(),
            payload: record.payload.clone(),
            received_at_us: record.received_at_us,
        });
        Verdict::Forwarded
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
        // Checked once here: the decoder and the raw row then take it as text.
        let Ok(text) = std::str::from_utf8(payload) else {
            let reason = EventView::decode(payload).err().map(|e| e.to_string());
            return self.dead_letter(record, reason.unwrap_or_else(|| "not UTF-8".into()));
        };
        let event = match EventView::decode_text(text) {
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
        let mut parts = Vec::new();
        for meter in catalog.meters_for(&event.event_type) {
            match meter.part(&event) {
                Ok(part) => parts.push((meter, part)),
                Err(e) => return self.dead_letter(record, format!("meter {}: {e}", meter.slug)),
            }
        }
        for (meter, part) in &parts {
            let lookup = RollupKeyRef {
                tenant,
                meter: &meter.slug,
                window_start: part.window_start,
                names: &meter.group_by,
                values: &part.group_values,
            };
            if let Some(existing) = self.rollups.get(&lookup) {
                if let Err(e) = existing.check_merge(&part.state) {
                    return self.dead_letter(record, format!("meter {}: {e}", meter.slug));
                }
            }
        }
        for (meter, part) in parts {
            let lookup = RollupKeyRef {
                tenant,
                meter: &meter.slug,
                window_start: part.window_start,
                names: &meter.group_by,
                values: &part.group_values,
            };
            match self.rollups.get_mut(&lookup) {
                // Checked above; a failure here would be a broken merge law.
                Some(existing) => {
                    if let Err(e) = existing.merge(part.state) {
                        tracing::error!(error = %e, "a checked merge failed");
                    }
                }
                None => {
                    self.rollups.insert(lookup.to_owned_key(), part.state);
                }
            }
        }

        let time_secs = event.time.timestamp();
        self.seen.insert(key);
        self.new_keys.push((key, time_secs));
        self.accepted += 1;
        let (tenant, source, event_type) = (
            self.intern(tenant),
            self.intern(&event.source),
            self.intern(&event.event_type),
        );
        let event_id = PayloadText::of(text, event.id);
        let subject = PayloadText::of(text, event.subject.unwrap_or_default());
        self.raw.push(RawRow {
            tenant,
            event_time_us: event.time.timestamp_micros(),
            partition: record.partition,
            offset: record.offset,
            write_id: Arc::from(""),
            dedupe_key: key,
            event_id,
            source,
            event_type,
            subject,
            payload: text.to_owned(),
            received_at_us: record.received_at_us,
        });
        Verdict::Accepted
    }

    pub fn dead_lettered(&self) -> u32 {
        self.dead.len() as u32
    }

    pub fn forwarded(&self) -> u32 {
        self.forwards.len() as u32
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
                    allow_negative: false,
                },
                Meter {
                    slug: "sessions".into(),
                    event_type: "session".into(),
                    aggregation: Aggregation::Count,
                    value_path: None,
                    group_by: vec![],
                    window: Window::Day,
                    allow_negative: false,
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
    fn a_reset_batch_folds_like_a_new_one() {
        let (c, d, l) = (catalog(), DedupeSet::default(), limits());
        let mut reused = PartitionBatch::with_capacity(0, 4);
        for i in 0..3 {
            reused.add(
                &record(i, Some("ten_a"), event(&i.to_string(), json!(i))),
                &c,
                &d,
                &l,
            );
        }
        reused.reset(2);
        let mut fresh = PartitionBatch::new(2);
        for b in [&mut reused, &mut fresh] {
            // Id "1" again: a duplicate only within the batch that saw it.
            b.add(&record(10, Some("ten_a"), event("1", json!(7))), &c, &d, &l);
        }
        assert_eq!(reused.raw, fresh.raw);
        assert_eq!(reused.rollups, fresh.rollups);
        assert_eq!(reused.new_keys, fresh.new_keys);
        assert_eq!(
            (
                reused.partition,
                reused.events,
                reused.accepted,
                reused.first_offset,
                reused.last_offset
            ),
            (
                fresh.partition,
                fresh.events,
                fresh.accepted,
                fresh.first_offset,
                fresh.last_offset
            )
        );
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
        /// A borrowed key finds its owned key: equal hashes, equivalent.
        #[test]
        fn borrowed_keys_hash_as_owned_keys(
            tenant in "[a-z]{0,6}", meter in "[a-z]{0,6}", secs in 0i64..4_000_000_000,
            group in proptest::collection::vec(("[a-z]{0,4}", "[a-zé]{0,4}"), 0..4)
        ) {
            use std::hash::BuildHasher;
            let names: Vec<String> = group.iter().map(|(n, _)| n.clone()).collect();
            let values: Vec<Cow<'_, str>> = group.iter().map(|(_, v)| Cow::Borrowed(v.as_str())).collect();
            let lookup = RollupKeyRef {
                tenant: &tenant, meter: &meter,
                window_start: DateTime::from_timestamp(secs, 0).unwrap(),
                names: &names, values: &values,
            };
            let owned = lookup.to_owned_key();
            prop_assert_eq!(FxBuildHasher.hash_one(&lookup), FxBuildHasher.hash_one(&owned));
            prop_assert!(lookup.equivalent(&owned));
            let mut map = RollupMap::default();
            map.insert(owned, RollupState::Count(1));
            prop_assert!(map.get(&lookup).is_some());
        }

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

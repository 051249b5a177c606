//! The rows of the ClickHouse usage tables (`migrations/clickhouse/`), and
//! the exact conversion of rollup states to and from their stored form.

use std::collections::BTreeSet;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use dotmac_schema::usage::{RollupKey, RollupState};
use rust_decimal::Decimal;

use dotmac_ingest::dedupe::DedupeKey;
use serde::{Deserialize, Serialize};

/// One row of `usage_batches`: the commit record of one partition's share
/// of a flush. Rows of the other tables count only when their `write_id`
/// has a row here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRow {
    pub partition: i32,
    pub first_offset: i64,
    pub last_offset: i64,
    pub write_id: String,
    pub written_at_us: i64,
    pub events: u32,
    pub accepted: u32,
    pub duplicates: u32,
    pub dead_lettered: u32,
    /// The writer's claim on the partition (`usage_claims`): a later
    /// owner's fence on this epoch voids the batch.
    pub epoch: u64,
}

/// One accepted event, kept whole so every rollup can be recomputed.
/// Strings that repeat across a batch (tenant, write id, source, type) are
/// shared, the event's id and subject are ranges of its payload when they
/// can be, and the dedupe key stays bytes until it is written as hex: the
/// fold makes one of these per event, and allocations were its cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRow {
    pub tenant: Arc<str>,
    pub event_time_us: i64,
    pub partition: i32,
    pub offset: i64,
    pub write_id: Arc<str>,
    pub dedupe_key: DedupeKey,
    pub event_id: PayloadText,
    pub source: Arc<str>,
    pub event_type: Arc<str>,
    pub subject: PayloadText,
    /// The event exactly as produced (CloudEvents JSON).
    pub payload: String,
    pub received_at_us: i64,
}

/// A text field of an event: a byte range of its payload when the JSON
/// string had no escapes (the usual case), else its own decoded copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadText {
    Range(usize, usize),
    Owned(String),
}

impl PayloadText {
    /// `value` as found in `payload`: a range when `value` borrows from it.
    pub fn of(payload: &str, value: std::borrow::Cow<'_, str>) -> PayloadText {
        if let std::borrow::Cow::Borrowed(v) = &value {
            // Address arithmetic only (no dereference): where `v` starts
            // within `payload`, checked against the text itself.
            let start = (v.as_ptr() as usize).wrapping_sub(payload.as_ptr() as usize);
            if payload.get(start..start + v.len()) == Some(*v) {
                return PayloadText::Range(start, start + v.len());
            }
        }
        PayloadText::Owned(value.into_owned())
    }

    pub fn resolve<'a>(&'a self, payload: &'a str) -> &'a str {
        match self {
            PayloadText::Range(a, b) => payload.get(*a..*b).unwrap_or_default(),
            PayloadText::Owned(s) => s,
        }
    }
}

impl Serialize for RawRow {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut hex = [0u8; 32];
        hex::encode_to_slice(self.dedupe_key.0, &mut hex).map_err(serde::ser::Error::custom)?;
        let hex = std::str::from_utf8(&hex).map_err(serde::ser::Error::custom)?;
        let mut row = s.serialize_struct("RawRow", 12)?;
        row.serialize_field("tenant", &*self.tenant)?;
        row.serialize_field("event_time_us", &self.event_time_us)?;
        row.serialize_field("partition", &self.partition)?;
        row.serialize_field("offset", &self.offset)?;
        row.serialize_field("write_id", &*self.write_id)?;
        row.serialize_field("dedupe_key", hex)?;
        row.serialize_field("event_id", self.event_id.resolve(&self.payload))?;
        row.serialize_field("source", &*self.source)?;
        row.serialize_field("event_type", &*self.event_type)?;
        row.serialize_field("subject", self.subject.resolve(&self.payload))?;
        row.serialize_field("payload", &self.payload)?;
        row.serialize_field("received_at_us", &self.received_at_us)?;
        row.end()
    }
}

/// One flush's contribution to one rollup window: readers merge every
/// committed part of a window with the merge law of `dotmac_schema`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollupPartRow {
    pub tenant: String,
    pub meter: String,
    pub window_start: i64,
    /// The group as a JSON array of `[property, value]` pairs.
    pub group_key: String,
    pub partition: i32,
    pub write_id: String,
    pub aggregation: String,
    /// SUM / MIN / MAX / LATEST value as exact decimal text.
    pub value: String,
    pub count: u64,
    pub uniques: Vec<String>,
    pub latest_time_us: i64,
    pub latest_id: String,
}

#[derive(Debug, thiserror::Error)]
#[error("stored rollup part is unreadable: {0}")]
pub struct PartError(pub String);

impl RollupPartRow {
    pub fn new(
        key: &RollupKey,
        state: &RollupState,
        partition: i32,
        write_id: &str,
    ) -> RollupPartRow {
        let mut row = RollupPartRow {
            tenant: key.tenant.clone(),
            meter: key.meter.clone(),
            window_start: key.window_start.timestamp(),
            group_key: serde_json::to_string(&key.group).unwrap_or_else(|_| "[]".into()),
            partition,
            write_id: write_id.to_owned(),
            aggregation: state.kind().to_owned(),
            value: String::new(),
            count: 0,
            uniques: Vec::new(),
            latest_time_us: 0,
            latest_id: String::new(),
        };
        match state {
            RollupState::Sum(d) | RollupState::Min(d) | RollupState::Max(d) => {
                row.value = d.to_string()
            }
            RollupState::Count(n) => row.count = *n,
            RollupState::Unique(set) => row.uniques = set.iter().cloned().collect(),
            RollupState::Latest { time, id, value } => {
                row.value = value.to_string();
                row.latest_time_us = time.timestamp_micros();
                row.latest_id = id.clone();
            }
        }
        row
    }

    /// The key this part belongs to.
    pub fn key(&self) -> Result<RollupKey, PartError> {
        Ok(RollupKey {
            tenant: self.tenant.clone(),
            meter: self.meter.clone(),
            window_start: DateTime::<Utc>::from_timestamp(self.window_start, 0).ok_or_else(
                || PartError(format!("window_start {} out of range", self.window_start)),
            )?,
            group: serde_json::from_str(&self.group_key).map_err(|e| PartError(e.to_string()))?,
        })
    }

    /// The state stored in this part.
    pub fn state(&self) -> Result<RollupState, PartError> {
        let decimal = || {
            Decimal::from_str(&self.value)
                .map_err(|e| PartError(format!("value {:?}: {e}", self.value)))
        };
        Ok(match self.aggregation.as_str() {
            "SUM" => RollupState::Sum(decimal()?),
            "MIN" => RollupState::Min(decimal()?),
            "MAX" => RollupState::Max(decimal()?),
            "COUNT" => RollupState::Count(self.count),
            "UNIQUE_COUNT" => {
                RollupState::Unique(self.uniques.iter().cloned().collect::<BTreeSet<_>>())
            }
            "LATEST" => RollupState::Latest {
                time: DateTime::<Utc>::from_timestamp_micros(self.latest_time_us).ok_or_else(
                    || {
                        PartError(format!(
                            "latest_time_us {} out of range",
                            self.latest_time_us
                        ))
                    },
                )?,
                id: self.latest_id.clone(),
                value: decimal()?,
            },
            other => return Err(PartError(format!("unknown aggregation {other:?}"))),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn raw_rows_serialize_with_their_text_resolved() {
        use std::borrow::Cow;
        let payload = r#"{"id":"evt-1","subject":"a\"b"}"#.to_owned();
        let id = PayloadText::of(&payload, Cow::Borrowed(&payload[7..12]));
        assert_eq!(id, PayloadText::Range(7, 12));
        let subject = PayloadText::of(&payload, Cow::Owned("a\"b".to_owned()));
        assert_eq!(subject, PayloadText::Owned("a\"b".into()));
        // A string borrowed from elsewhere is copied, never mis-ranged.
        let elsewhere = String::from("evt-1");
        assert_eq!(
            PayloadText::of(&payload, Cow::Borrowed(&elsewhere)),
            PayloadText::Owned("evt-1".into())
        );
        let key = DedupeKey::new("t", "s", "evt-1");
        let row = RawRow {
            tenant: Arc::from("ten_1"),
            event_time_us: 5,
            partition: 1,
            offset: 9,
            write_id: Arc::from("w1"),
            dedupe_key: key,
            event_id: id,
            source: Arc::from("//s"),
            event_type: Arc::from("t"),
            subject,
            payload: payload.clone(),
            received_at_us: 7,
        };
        let json: serde_json::Value = serde_json::to_value(&row).unwrap();
        assert_eq!(json["event_id"], "evt-1");
        assert_eq!(json["subject"], "a\"b");
        assert_eq!(json["dedupe_key"], hex::encode(key.0));
        assert_eq!(json["tenant"], "ten_1");
        assert_eq!(json["payload"], payload.as_str());
    }

    use super::*;
    use proptest::prelude::*;

    fn any_state() -> impl Strategy<Value = RollupState> {
        let dec = (any::<i64>(), 0u32..=18).prop_map(|(m, s)| Decimal::new(m, s));
        prop_oneof![
            dec.clone().prop_map(RollupState::Sum),
            dec.clone().prop_map(RollupState::Min),
            dec.clone().prop_map(RollupState::Max),
            any::<u64>().prop_map(RollupState::Count),
            proptest::collection::btree_set("\\PC{0,8}", 0..5).prop_map(RollupState::Unique),
            (0i64..4_000_000_000_000_000, "\\PC{0,8}", dec).prop_map(|(t, id, value)| {
                RollupState::Latest {
                    time: DateTime::<Utc>::from_timestamp_micros(t).unwrap(),
                    id,
                    value,
                }
            }),
        ]
    }

    proptest! {
        #[test]
        fn states_and_keys_survive_the_stored_form_exactly(
            state in any_state(), window in 0i64..4_000_000_000, group in proptest::collection::vec(("[a-z]{1,4}", "\\PC{0,6}"), 0..3)
        ) {
            let key = RollupKey {
                tenant: "ten_1".into(),
                meter: "m".into(),
                window_start: DateTime::<Utc>::from_timestamp(window, 0).unwrap(),
                group,
            };
            let row = RollupPartRow::new(&key, &state, 3, "w");
            // Through JSON, as ClickHouse stores and returns it.
            let back: RollupPartRow = serde_json::from_str(&serde_json::to_string(&row).unwrap()).unwrap();
            prop_assert_eq!(back.state().unwrap(), state);
            prop_assert_eq!(back.key().unwrap(), key);
        }
    }
}

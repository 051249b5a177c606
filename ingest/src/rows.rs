//! The rows of the ClickHouse usage tables (`migrations/clickhouse/`), and
//! the exact conversion of rollup states to and from their stored form.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use dotmac_schema::usage::{RollupKey, RollupState};
use rust_decimal::Decimal;
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
}

/// One accepted event, kept whole so every rollup can be recomputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawRow {
    pub tenant: String,
    pub event_time_us: i64,
    pub partition: i32,
    pub offset: i64,
    pub write_id: String,
    pub dedupe_key: String,
    pub event_id: String,
    pub source: String,
    pub event_type: String,
    pub subject: String,
    /// The event exactly as produced (CloudEvents JSON).
    pub payload: String,
    pub received_at_us: i64,
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

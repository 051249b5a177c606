//! Rollup rows and their merge law. A row is the state of one meter for one
//! tenant, window and group; merging two states of the same key gives the
//! state of the union of their events. The law (property-tested below):
//! merging is associative and commutative, and folding any partition of a
//! multiset of events, then merging the parts, equals folding the whole. That
//! is what lets the aggregator fold batches independently and combine them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::event::UsageEvent;
use super::meter::{Meter, MeterError};

/// The identity of one rollup row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    pub tenant: String,
    pub meter: String,
    pub window_start: DateTime<Utc>,
    pub group: Vec<(String, String)>,
}

/// The aggregate of one row so far. Every variant forms a commutative
/// semigroup under [`RollupState::merge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollupState {
    Sum(Decimal),
    Count(u64),
    Min(Decimal),
    Max(Decimal),
    /// The exact set of distinct values (exact, so merges stay exact).
    Unique(BTreeSet<String>),
    /// The value of the latest event. Ties on time go to the greater id, then
    /// the greater value: a total order, so the result never depends on
    /// arrival order.
    Latest {
        time: DateTime<Utc>,
        id: String,
        value: Decimal,
    },
}

/// The largest magnitude a SUM window of one tenant and meter reaches
/// through the fold: 10^20. With every value at most
/// [`super::meter::MAX_EVENT_VALUE`] (10^15) per event, a reader summing
/// windows would need billions of windows at this bound to overflow the
/// exact decimal range (about 7.9 × 10^28), so totals stay exact and one
/// tenant's data cannot fail another's read.
pub const MAX_WINDOW_TOTAL: Decimal = Decimal::from_parts(0x6310_0000, 0x6BC7_5E2D, 0x5, false, 0);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollupError {
    #[error("cannot merge a {0} state into a {1} state")]
    KindMismatch(&'static str, &'static str),
    #[error("the sum overflows the exact decimal range")]
    Overflow,
    #[error("the window's total would exceed 10^20 (at most 10^20 per meter, window and tenant)")]
    WindowTotalTooLarge,
    #[error(transparent)]
    Meter(#[from] MeterError),
}

impl RollupState {
    /// The aggregation's name, as meters spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            RollupState::Sum(_) => "SUM",
            RollupState::Count(_) => "COUNT",
            RollupState::Min(_) => "MIN",
            RollupState::Max(_) => "MAX",
            RollupState::Unique(_) => "UNIQUE_COUNT",
            RollupState::Latest { .. } => "LATEST",
        }
    }

    /// Whether the fold may merge `other` into `self`, without changing
    /// anything: the merge would succeed, and a SUM window stays within
    /// [`MAX_WINDOW_TOTAL`]. A fold checks every contribution of an event
    /// first, so an event is either counted in all its meters or in none.
    pub fn check_merge(&self, other: &RollupState) -> Result<(), RollupError> {
        match (self, other) {
            (RollupState::Sum(a), RollupState::Sum(b)) => {
                let sum = a.checked_add(*b).ok_or(RollupError::Overflow)?;
                if super::meter::beyond(sum, MAX_WINDOW_TOTAL) {
                    return Err(RollupError::WindowTotalTooLarge);
                }
                Ok(())
            }
            (RollupState::Count(a), RollupState::Count(b)) => {
                a.checked_add(*b).map(drop).ok_or(RollupError::Overflow)
            }
            (a, b) if a.kind() == b.kind() => Ok(()),
            (a, b) => Err(RollupError::KindMismatch(b.kind(), a.kind())),
        }
    }

    pub fn merge(&mut self, other: RollupState) -> Result<(), RollupError> {
        match (&mut *self, other) {
            (RollupState::Sum(a), RollupState::Sum(b)) => {
                *a = a.checked_add(b).ok_or(RollupError::Overflow)?;
            }
            (RollupState::Count(a), RollupState::Count(b)) => {
                *a = a.checked_add(b).ok_or(RollupError::Overflow)?;
            }
            (RollupState::Min(a), RollupState::Min(b)) => *a = (*a).min(b),
            (RollupState::Max(a), RollupState::Max(b)) => *a = (*a).max(b),
            (RollupState::Unique(a), RollupState::Unique(b)) => a.extend(b),
            (
                RollupState::Latest { time, id, value },
                RollupState::Latest {
                    time: t2,
                    id: i2,
                    value: v2,
                },
            ) => {
                if (t2, &i2, v2) > (*time, &*id, *value) {
                    *time = t2;
                    *id = i2;
                    *value = v2;
                }
            }
            (_, other) => return Err(RollupError::KindMismatch(other.kind(), self.kind())),
        }
        Ok(())
    }

    /// The number the row reports: distinct values for UNIQUE_COUNT.
    pub fn value(&self) -> Decimal {
        match self {
            RollupState::Sum(d) | RollupState::Min(d) | RollupState::Max(d) => *d,
            RollupState::Count(n) => Decimal::from(*n),
            RollupState::Unique(s) => Decimal::from(s.len()),
            RollupState::Latest { value, .. } => *value,
        }
    }
}

/// Folds the events `meter` applies to into rows of `tenant`. Events of other
/// types are skipped; an event whose data does not fit the meter is an error.
pub fn fold<'a>(
    tenant: &str,
    meter: &Meter,
    events: impl IntoIterator<Item = &'a UsageEvent>,
) -> Result<BTreeMap<RollupKey, RollupState>, RollupError> {
    let mut rows: BTreeMap<RollupKey, RollupState> = BTreeMap::new();
    for event in events.into_iter().filter(|e| meter.applies_to(e)) {
        let c = meter.contribution(event)?;
        let key = RollupKey {
            tenant: tenant.to_owned(),
            meter: meter.slug.clone(),
            window_start: c.window_start,
            group: c.group,
        };
        merge_into(&mut rows, key, c.state)?;
    }
    Ok(rows)
}

/// Merges one state into its key's entry (inserting it when the key is new).
pub fn merge_into(
    into: &mut BTreeMap<RollupKey, RollupState>,
    key: RollupKey,
    state: RollupState,
) -> Result<(), RollupError> {
    match into.get_mut(&key) {
        Some(existing) => existing.merge(state),
        None => {
            into.insert(key, state);
            Ok(())
        }
    }
}

/// Merges the rows of `other` into `into`.
pub fn merge_all(
    into: &mut BTreeMap<RollupKey, RollupState>,
    other: BTreeMap<RollupKey, RollupState>,
) -> Result<(), RollupError> {
    for (key, state) in other {
        merge_into(into, key, state)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bounds_are_the_powers_of_ten_they_say() {
        assert_eq!(MAX_WINDOW_TOTAL, Decimal::from(10u128.pow(20)));
        assert_eq!(
            super::super::meter::MAX_EVENT_VALUE,
            Decimal::from(10u64.pow(15))
        );
        // The mantissa shortcut agrees with a full comparison.
        use super::super::meter::beyond;
        for (n, bound, out) in [
            ("1000000000000000", "1000000000000000", false),
            ("1000000000000000.1", "1000000000000000", true),
            ("-1000000000000001", "1000000000000000", true),
            ("99999999999999999.99", "1000000000000000", true),
            ("0.0000000000000000000001", "1000000000000000", false),
            ("1000000000000000.0000000", "1000000000000000", false),
        ] {
            let (n, bound): (Decimal, Decimal) = (n.parse().unwrap(), bound.parse().unwrap());
            assert_eq!(beyond(n, bound), out, "{n} vs {bound}");
            assert_eq!(beyond(n, bound), n.abs() > bound, "{n} vs {bound}");
        }
        let big = RollupState::Sum(MAX_WINDOW_TOTAL);
        assert_eq!(big.check_merge(&RollupState::Sum(Decimal::ZERO)), Ok(()));
        assert_eq!(
            big.check_merge(&RollupState::Sum(Decimal::ONE)),
            Err(RollupError::WindowTotalTooLarge)
        );
    }
    use crate::usage::meter::{Aggregation, Window};
    use proptest::prelude::*;
    use serde_json::json;

    const AGGREGATIONS: [Aggregation; 6] = [
        Aggregation::Sum,
        Aggregation::Count,
        Aggregation::Min,
        Aggregation::Max,
        Aggregation::UniqueCount,
        Aggregation::Latest,
    ];

    fn any_decimal() -> impl Strategy<Value = Decimal> {
        // Up to 12 decimal places, both signs: the precision unit prices use.
        (any::<i64>(), 0u32..=12).prop_map(|(m, s)| Decimal::new(m / 1000, s))
    }

    fn any_time() -> impl Strategy<Value = DateTime<Utc>> {
        (0i64..(3 * 86_400)).prop_map(|s| DateTime::from_timestamp(1_795_000_000 + s, 0).unwrap())
    }

    fn any_state(kind: Aggregation) -> BoxedStrategy<RollupState> {
        match kind {
            Aggregation::Sum => any_decimal().prop_map(RollupState::Sum).boxed(),
            Aggregation::Count => (0u64..1 << 40).prop_map(RollupState::Count).boxed(),
            Aggregation::Min => any_decimal().prop_map(RollupState::Min).boxed(),
            Aggregation::Max => any_decimal().prop_map(RollupState::Max).boxed(),
            Aggregation::UniqueCount => proptest::collection::btree_set("[a-e]{1,2}", 0..6)
                .prop_map(RollupState::Unique)
                .boxed(),
            Aggregation::Latest => (any_time(), "[a-c]{1,2}", any_decimal())
                .prop_map(|(time, id, value)| RollupState::Latest { time, id, value })
                .boxed(),
        }
    }

    fn three_states() -> impl Strategy<Value = (RollupState, RollupState, RollupState)> {
        proptest::sample::select(AGGREGATIONS.to_vec())
            .prop_flat_map(|k| (any_state(k), any_state(k), any_state(k)))
    }

    fn merged(mut a: RollupState, b: RollupState) -> RollupState {
        a.merge(b).unwrap();
        a
    }

    /// An event of type `t` with value, group and time from the strategy.
    fn any_event() -> impl Strategy<Value = UsageEvent> {
        (
            proptest::sample::select(vec!["calls", "bytes"]),
            0u32..40,
            (-1_000_000i64..1_000_000, 0u32..4),
            proptest::sample::select(vec!["north", "south"]),
            any_time(),
        )
            .prop_map(|(t, id, (m, s), region, time)| {
                UsageEvent::from_value(json!({
                    "specversion": "1.0", "id": format!("e{id}"), "source": "src", "type": t,
                    "time": time.to_rfc3339(),
                    "data": { "v": Decimal::new(m, s).to_string(), "who": format!("u{}", id % 7), "region": region }
                }))
                .unwrap()
            })
    }

    fn meter_for(kind: Aggregation, window: Window) -> Meter {
        let value_path = match kind {
            Aggregation::Count => None,
            Aggregation::UniqueCount => Some("who".to_owned()),
            _ => Some("v".to_owned()),
        };
        Meter {
            slug: "m-test".into(),
            event_type: "bytes".into(),
            aggregation: kind,
            value_path,
            group_by: vec!["region".into()],
            window,
            // The merge law holds for any sign; the values here run negative.
            allow_negative: true,
        }
    }

    proptest! {
        #[test]
        fn merge_is_commutative((a, b, _) in three_states()) {
            prop_assert_eq!(merged(a.clone(), b.clone()), merged(b, a));
        }

        #[test]
        fn merge_is_associative((a, b, c) in three_states()) {
            prop_assert_eq!(
                merged(merged(a.clone(), b.clone()), c.clone()),
                merged(a, merged(b, c))
            );
        }

        #[test]
        fn folding_any_partition_then_merging_equals_folding_the_whole(
            events in proptest::collection::vec(any_event(), 0..60),
            parts in proptest::collection::vec(0usize..4, 60),
            kind in proptest::sample::select(AGGREGATIONS.to_vec()),
            window in proptest::sample::select(vec![Window::Minute, Window::Hour, Window::Day]),
        ) {
            let meter = meter_for(kind, window);
            let whole = fold("ten_a", &meter, &events).unwrap();
            let mut combined = BTreeMap::new();
            for p in 0..4 {
                let part: Vec<&UsageEvent> = events
                    .iter()
                    .zip(&parts)
                    .filter(|(_, q)| **q == p)
                    .map(|(e, _)| e)
                    .collect();
                merge_all(&mut combined, fold("ten_a", &meter, part).unwrap()).unwrap();
            }
            prop_assert_eq!(whole, combined);
        }
    }

    #[test]
    fn latest_ties_resolve_the_same_in_either_order() {
        let t = DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let a = RollupState::Latest {
            time: t,
            id: "same".into(),
            value: Decimal::ONE,
        };
        let b = RollupState::Latest {
            time: t,
            id: "same".into(),
            value: Decimal::TWO,
        };
        assert_eq!(merged(a.clone(), b.clone()), merged(b, a));
    }

    #[test]
    fn mismatched_kinds_and_overflow_are_errors() {
        let mut s = RollupState::Sum(Decimal::MAX);
        assert_eq!(
            s.merge(RollupState::Sum(Decimal::ONE)),
            Err(RollupError::Overflow)
        );
        assert_eq!(
            RollupState::Count(1).merge(RollupState::Sum(Decimal::ONE)),
            Err(RollupError::KindMismatch("SUM", "COUNT"))
        );
    }

    #[test]
    fn known_totals_per_aggregation() {
        let ev = |id: &str, secs: i64, v: &str, who: &str| {
            UsageEvent::from_value(json!({
                "specversion": "1.0", "id": id, "source": "s", "type": "bytes",
                "time": DateTime::from_timestamp(1_795_000_000 + secs, 0).unwrap().to_rfc3339(),
                "data": { "v": v, "who": who, "region": "north" }
            }))
            .unwrap()
        };
        let events = [
            ev("a", 0, "1.10", "x"),
            ev("b", 5, "2.25", "y"),
            ev("c", 3, "-0.35", "x"),
        ];
        let expect = [
            (Aggregation::Sum, "3.00"),
            (Aggregation::Count, "3"),
            (Aggregation::Min, "-0.35"),
            (Aggregation::Max, "2.25"),
            (Aggregation::UniqueCount, "2"),
            (Aggregation::Latest, "2.25"),
        ];
        for (kind, total) in expect {
            let rows = fold("t", &meter_for(kind, Window::Day), &events).unwrap();
            assert_eq!(rows.len(), 1);
            let value = rows.values().next().unwrap().value();
            assert_eq!(value, total.parse::<Decimal>().unwrap(), "{kind:?}");
        }
    }
}

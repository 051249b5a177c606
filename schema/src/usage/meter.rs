//! Meters: which events count, how (SUM, COUNT, MIN, MAX, UNIQUE_COUNT,
//! LATEST), of which value in `data`, grouped by which properties, in which
//! time windows. A meter turns one event into one [`Contribution`].

use std::str::FromStr;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use std::borrow::Cow;

use rust_decimal::Decimal;

use super::event::UsageEvent;
use super::rollup::RollupState;
use super::view::{EventView, Scalar};

/// How a meter combines the events of one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Aggregation {
    Sum,
    Count,
    Min,
    Max,
    UniqueCount,
    Latest,
}

impl Aggregation {
    /// Every aggregation but COUNT reads a value from the event.
    pub fn needs_value(self) -> bool {
        self != Aggregation::Count
    }
}

/// The length of a rollup window; windows start on UTC boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "graphql", derive(async_graphql::Enum))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Window {
    Minute,
    Hour,
    Day,
}

impl Window {
    pub fn length(self) -> TimeDelta {
        match self {
            Window::Minute => TimeDelta::minutes(1),
            Window::Hour => TimeDelta::hours(1),
            Window::Day => TimeDelta::days(1),
        }
    }

    /// The start of the window that contains `t`.
    pub fn start(self, t: DateTime<Utc>) -> DateTime<Utc> {
        // Truncation to a whole minute, hour or day cannot overflow for any
        // time chrono represents; fall back to `t` rather than panic.
        t.duration_trunc(self.length()).unwrap_or(t)
    }
}

/// The largest magnitude a metered value of one event may have: 10^15 (a
/// petabyte in bytes, a billion in millionths). Beyond it the event is
/// refused with a reason (dead-lettered), so no event can poison a total.
pub const MAX_EVENT_VALUE: Decimal = Decimal::from_parts(0xA4C6_8000, 0x0003_8D7E, 0, false, 0);

/// Whether `n` is larger in magnitude than `bound` (an integer). The
/// mantissa answers for nearly every value without the rescaling a full
/// comparison costs: a value's magnitude is at most its mantissa.
pub(crate) fn beyond(n: Decimal, bound: Decimal) -> bool {
    let bound_mantissa = bound.mantissa().unsigned_abs();
    n.mantissa().unsigned_abs() > bound_mantissa && n.abs() > bound
}

/// At most this many group-by properties per meter.
pub const MAX_GROUP_BY: usize = 5;

/// A meter definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Meter {
    /// Stable name (`[a-z0-9-]`, 3–63), used in rollups and on invoices.
    pub slug: String,
    /// The CloudEvents `type` this meter counts.
    pub event_type: String,
    pub aggregation: Aggregation,
    /// Dot-separated path into `data`; required unless COUNT.
    pub value_path: Option<String>,
    /// Properties of `data` whose values split the rollups.
    pub group_by: Vec<String>,
    pub window: Window,
    /// Whether a value may be negative. Off by default: a negative value
    /// lowers a bill, which only a meter made for it (a correction feed)
    /// should do.
    #[serde(default)]
    pub allow_negative: bool,
}

/// Why a meter definition, or an event under a meter, is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeterError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("data.{path}: {reason}")]
    Value { path: String, reason: String },
}

/// What one event adds to one rollup row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contribution {
    pub window_start: DateTime<Utc>,
    /// (property, value) in the meter's group-by order; a missing property is "".
    pub group: Vec<(String, String)>,
    pub state: RollupState,
}

fn path_ok(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 200
        && p.split('.').all(|seg| {
            !seg.is_empty()
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// Reads a JSON number (from its text) or a numeric string as an exact
/// decimal, never through a float.
pub fn exact_decimal(v: &Scalar<'_>) -> Option<Decimal> {
    let text = match v {
        Scalar::Number(n) => n.as_ref(),
        Scalar::Text(s) => s.trim(),
        _ => return None,
    };
    Decimal::from_str(text)
        .ok()
        .or_else(|| Decimal::from_scientific(text).ok())
}

/// A scalar's text as a group-by value; `None` for objects and arrays.
fn group_text<'v>(v: Scalar<'v>) -> Option<Cow<'v, str>> {
    match v {
        Scalar::Text(s) | Scalar::Number(s) => Some(s),
        Scalar::Bool(b) => Some(Cow::Borrowed(if b { "true" } else { "false" })),
        Scalar::Null => Some(Cow::Borrowed("")),
        Scalar::Composite => None,
    }
}

/// What a meter reads of an event: its time, its id and scalars in `data`.
/// Implemented by the owned event and by the borrowed view, so both are
/// metered by the one [`Meter::part`].
pub trait MeteredEvent {
    fn time(&self) -> DateTime<Utc>;
    fn id(&self) -> &str;
    fn scalar_at(&self, path: &str) -> Option<Scalar<'_>>;
}

impl MeteredEvent for UsageEvent {
    fn time(&self) -> DateTime<Utc> {
        self.time
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn scalar_at(&self, path: &str) -> Option<Scalar<'_>> {
        UsageEvent::scalar_at(self, path)
    }
}

impl MeteredEvent for EventView<'_> {
    fn time(&self) -> DateTime<Utc> {
        self.time
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn scalar_at(&self, path: &str) -> Option<Scalar<'_>> {
        self.value_at(path)
    }
}

/// What one event adds to one rollup row, its group values borrowed from
/// the event (in the meter's group-by order; a missing property is "").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part<'e> {
    pub window_start: DateTime<Utc>,
    pub group_values: Vec<Cow<'e, str>>,
    pub state: RollupState,
}

impl Meter {
    /// Checks the definition (for the GraphQL mutations that manage meters).
    pub fn validate(&self) -> Result<(), MeterError> {
        let invalid = |field, reason: &str| {
            Err(MeterError::Invalid {
                field,
                reason: reason.to_owned(),
            })
        };
        if let Err(e) = crate::slug::validate_slug(&self.slug) {
            return Err(MeterError::Invalid {
                field: "slug",
                reason: e.to_string(),
            });
        }
        if self.event_type.is_empty() || self.event_type.len() > super::event::MAX_ID_LEN {
            return invalid("eventType", "must be 1 to 256 characters");
        }
        match (&self.value_path, self.aggregation.needs_value()) {
            (None, true) => return invalid("valuePath", "is required for this aggregation"),
            (Some(p), _) if !path_ok(p) => {
                return invalid("valuePath", "must be dot-separated names of [A-Za-z0-9_-]")
            }
            _ => {}
        }
        if self.group_by.len() > MAX_GROUP_BY {
            return invalid("groupBy", "at most 5 properties");
        }
        if self.group_by.iter().any(|g| !path_ok(g)) {
            return invalid("groupBy", "must be dot-separated names of [A-Za-z0-9_-]");
        }
        let mut sorted = self.group_by.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.group_by.len() {
            return invalid("groupBy", "must not repeat a property");
        }
        Ok(())
    }

    /// Whether this meter counts `event`.
    pub fn applies_to(&self, event: &UsageEvent) -> bool {
        event.event_type == self.event_type
    }

    /// What `event` adds under this meter, or why its data does not fit.
    pub fn contribution(&self, event: &UsageEvent) -> Result<Contribution, MeterError> {
        let part = self.part(event)?;
        Ok(Contribution {
            window_start: part.window_start,
            group: self
                .group_by
                .iter()
                .cloned()
                .zip(part.group_values.into_iter().map(Cow::into_owned))
                .collect(),
            state: part.state,
        })
    }

    /// [`Meter::contribution`] without owning the group values: the fold's
    /// hot path.
    pub fn part<'e, E: MeteredEvent>(&self, event: &'e E) -> Result<Part<'e>, MeterError> {
        let value_error = |path: &str, reason: &str| MeterError::Value {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut group_values = Vec::with_capacity(self.group_by.len());
        for prop in &self.group_by {
            let text = match event.scalar_at(prop) {
                None => Cow::Borrowed(""),
                Some(v) => group_text(v)
                    .ok_or_else(|| value_error(prop, "a group-by value must be a scalar"))?,
            };
            group_values.push(text);
        }
        let raw = match &self.value_path {
            Some(p) if self.aggregation.needs_value() => Some((
                p,
                event
                    .scalar_at(p)
                    .ok_or_else(|| value_error(p, "is missing"))?,
            )),
            _ => None,
        };
        let number = || -> Result<Decimal, MeterError> {
            let (p, v) = raw
                .as_ref()
                .ok_or_else(|| value_error("", "no value path"))?;
            let n = exact_decimal(v)
                .ok_or_else(|| value_error(p, "must be a number or a numeric string"))?;
            if beyond(n, MAX_EVENT_VALUE) {
                return Err(value_error(p, "must be at most 10^15 in magnitude"));
            }
            if n.is_sign_negative() && !n.is_zero() && !self.allow_negative {
                return Err(value_error(
                    p,
                    "must not be negative (the meter allows no negative values)",
                ));
            }
            Ok(n)
        };
        let state = match self.aggregation {
            Aggregation::Count => RollupState::Count(1),
            Aggregation::Sum => RollupState::Sum(number()?),
            Aggregation::Min => RollupState::Min(number()?),
            Aggregation::Max => RollupState::Max(number()?),
            Aggregation::Latest => RollupState::Latest {
                time: event.time(),
                id: event.id().to_owned(),
                value: number()?,
            },
            Aggregation::UniqueCount => {
                let (p, v) = raw
                    .clone()
                    .ok_or_else(|| value_error("", "no value path"))?;
                let text = group_text(v)
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| value_error(p, "must be a non-empty scalar"))?;
                RollupState::Unique([text.into_owned()].into_iter().collect())
            }
        };
        Ok(Part {
            window_start: self.window.start(event.time()),
            group_values,
            state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros::dec;
    use serde_json::{json, Value};

    fn meter(aggregation: Aggregation, value_path: Option<&str>) -> Meter {
        Meter {
            slug: "session-bytes".into(),
            event_type: "session.bytes".into(),
            aggregation,
            value_path: value_path.map(str::to_owned),
            group_by: vec!["region".into()],
            window: Window::Hour,
            allow_negative: false,
        }
    }

    fn event(data: Value) -> UsageEvent {
        UsageEvent::from_value(json!({
            "specversion": "1.0", "id": "e1", "source": "s", "type": "session.bytes",
            "time": "2026-11-28T10:59:59.999Z", "data": data
        }))
        .unwrap()
    }

    #[test]
    fn values_are_exact_decimals_and_windows_truncate() {
        let c = meter(Aggregation::Sum, Some("bytes"))
            .contribution(&event(json!({ "bytes": 0.1, "region": "north" })))
            .unwrap();
        assert_eq!(c.state, RollupState::Sum(dec!(0.1)));
        assert_eq!(c.group, vec![("region".to_owned(), "north".to_owned())]);
        assert_eq!(c.window_start.to_rfc3339(), "2026-11-28T10:00:00+00:00");
        let c = meter(Aggregation::Max, Some("bytes"))
            .contribution(&event(json!({ "bytes": "1e3" })))
            .unwrap();
        assert_eq!(c.state, RollupState::Max(dec!(1000)));
        assert_eq!(
            c.group[0].1, "",
            "a missing group-by property is the empty group"
        );
    }

    #[test]
    fn bad_values_and_definitions_are_named() {
        let err = meter(Aggregation::Sum, Some("bytes"))
            .contribution(&event(json!({ "bytes": "lots" })))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "data.bytes: must be a number or a numeric string"
        );
        let err = meter(Aggregation::Sum, Some("bytes"))
            .contribution(&event(json!({})))
            .unwrap_err();
        assert_eq!(err.to_string(), "data.bytes: is missing");
        // Negative values lower a bill: refused unless the meter allows them.
        for aggregation in [
            Aggregation::Sum,
            Aggregation::Min,
            Aggregation::Max,
            Aggregation::Latest,
        ] {
            for value in [json!(-5), json!("-0.001"), json!(-1e-3)] {
                let mut m = meter(aggregation, Some("bytes"));
                let err = m
                    .contribution(&event(json!({ "bytes": value })))
                    .unwrap_err();
                assert_eq!(
                    err.to_string(),
                    "data.bytes: must not be negative (the meter allows no negative values)"
                );
                m.allow_negative = true;
                assert!(m.contribution(&event(json!({ "bytes": value }))).is_ok());
            }
            assert!(
                meter(aggregation, Some("bytes"))
                    .contribution(&event(json!({ "bytes": "-0" })))
                    .is_ok(),
                "negative zero is zero"
            );
        }
        assert!(meter(Aggregation::Count, None).validate().is_ok());
        let e = meter(Aggregation::Sum, None).validate().unwrap_err();
        assert!(matches!(
            e,
            MeterError::Invalid {
                field: "valuePath",
                ..
            }
        ));
        let mut m = meter(Aggregation::Count, None);
        m.group_by = vec!["a".into(), "a".into()];
        assert!(matches!(
            m.validate(),
            Err(MeterError::Invalid {
                field: "groupBy",
                ..
            })
        ));
    }
}

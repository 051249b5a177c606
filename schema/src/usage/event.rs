//! The usage event: a CloudEvents 1.0 JSON object whose `data` is an object.
//! Decoding never panics, whatever the bytes; every rejection names the field
//! and the reason so that it can travel in a dead-letter header or an intake
//! answer.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

/// Longest accepted `id` (and `type`, `subject`).
pub const MAX_ID_LEN: usize = 256;
/// Longest accepted `source` (a URI reference).
pub const MAX_SOURCE_LEN: usize = 1024;
/// Largest accepted encoded event.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

/// One metered occurrence reported by an ISP deployment. The tenant is not
/// part of it: it comes from the credential or the Kafka key.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct UsageEvent {
    pub id: String,
    pub source: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub time: DateTime<Utc>,
    pub data: Map<String, Value>,
}

/// Why bytes are not a usage event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is {size} bytes; at most {MAX_EVENT_BYTES} are accepted")]
    TooLarge { size: usize },
    #[error("not JSON: {0}")]
    Json(String),
    #[error("an event must be a JSON object")]
    NotAnObject,
    #[error("{0}: is required")]
    Missing(&'static str),
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl EventError {
    /// The field at fault, if the error is about one.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            EventError::Missing(f) | EventError::Invalid { field: f, .. } => Some(f),
            _ => None,
        }
    }
}

fn text<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<Option<&'a str>, EventError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Err(EventError::Invalid {
            field,
            reason: "must not be empty".into(),
        }),
        Some(Value::String(s)) if s.chars().count() > max => Err(EventError::Invalid {
            field,
            reason: format!("must be at most {max} characters"),
        }),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(EventError::Invalid {
            field,
            reason: "must be a string".into(),
        }),
    }
}

fn required<'a>(
    obj: &'a Map<String, Value>,
    field: &'static str,
    max: usize,
) -> Result<&'a str, EventError> {
    text(obj, field, max)?.ok_or(EventError::Missing(field))
}

impl UsageEvent {
    /// Decodes and validates one event from its JSON bytes.
    pub fn decode(bytes: &[u8]) -> Result<UsageEvent, EventError> {
        if bytes.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge { size: bytes.len() });
        }
        // The common case, a valid event, takes a borrowing typed parse;
        // anything it does not accept goes through the general path, which
        // gives every rejection its exact reason (property-tested equal).
        if let Some(event) = Self::decode_valid(bytes) {
            return Ok(event);
        }
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// A valid event through the borrowing view, then owned; `None` for
    /// anything unusual (the caller then takes the general path).
    fn decode_valid(bytes: &[u8]) -> Option<UsageEvent> {
        super::view::EventView::decode_valid(std::str::from_utf8(bytes).ok()?)?.into_owned()
    }

    /// The general path only (for the property test of the fast path).
    #[cfg(test)]
    pub(super) fn decode_general(bytes: &[u8]) -> Result<UsageEvent, EventError> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| EventError::Json(e.to_string()))?;
        Self::from_value(value)
    }

    /// Validates an already parsed event (one element of a batch).
    pub fn from_value(value: Value) -> Result<UsageEvent, EventError> {
        let Value::Object(mut obj) = value else {
            return Err(EventError::NotAnObject);
        };
        match required(&obj, "specversion", 16)? {
            "1.0" => {}
            other => {
                return Err(EventError::Invalid {
                    field: "specversion",
                    reason: format!("must be \"1.0\", not {other:?}"),
                })
            }
        }
        let id = required(&obj, "id", MAX_ID_LEN)?.to_owned();
        let source = required(&obj, "source", MAX_SOURCE_LEN)?.to_owned();
        let event_type = required(&obj, "type", MAX_ID_LEN)?.to_owned();
        let subject = text(&obj, "subject", MAX_ID_LEN)?.map(str::to_owned);
        let time_text = required(&obj, "time", 64)?;
        let time = DateTime::parse_from_rfc3339(time_text)
            .map_err(|e| EventError::Invalid {
                field: "time",
                reason: format!("must be an RFC 3339 timestamp ({e})"),
            })?
            .with_timezone(&Utc);
        let data = match obj.remove("data") {
            Some(Value::Object(m)) => m,
            None | Some(Value::Null) => return Err(EventError::Missing("data")),
            Some(_) => {
                return Err(EventError::Invalid {
                    field: "data",
                    reason: "must be a JSON object".into(),
                })
            }
        };
        if let Some(ct) = obj.get("datacontenttype") {
            if ct.as_str() != Some("application/json") {
                return Err(EventError::Invalid {
                    field: "datacontenttype",
                    reason: "must be application/json when given".into(),
                });
            }
        }
        Ok(UsageEvent {
            id,
            source,
            event_type,
            subject,
            time,
            data,
        })
    }

    /// The value at a dot-separated path into `data` (`"usage.bytes"`).
    pub fn value_at(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut current = self.data.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "specversion": "1.0", "id": "evt-1", "source": "//isp/radius-1",
            "type": "session.bytes", "subject": "cust-42", "time": "2026-11-28T10:15:00Z",
            "data": { "bytes": 1200, "usage": { "minutes": "2.5" } }
        })
    }

    #[test]
    fn a_valid_event_decodes() {
        let ev = UsageEvent::decode(good().to_string().as_bytes()).unwrap();
        assert_eq!(ev.event_type, "session.bytes");
        assert_eq!(ev.value_at("usage.minutes"), Some(&json!("2.5")));
        assert_eq!(ev.value_at("usage.nope"), None);
    }

    #[test]
    fn every_rejection_names_its_field() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"specversion": "0.3"}), "specversion"),
            (json!({"id": ""}), "id"),
            (json!({"id": "x".repeat(257)}), "id"),
            (json!({"source": 5}), "source"),
            (json!({"type": null}), "type"),
            (json!({"time": "yesterday"}), "time"),
            (json!({"data": [1, 2]}), "data"),
            (json!({"data": null}), "data"),
            (json!({"datacontenttype": "text/xml"}), "datacontenttype"),
        ];
        for (patch, field) in cases {
            let mut v = good();
            for (k, val) in patch.as_object().unwrap() {
                v[k] = val.clone();
            }
            let err = UsageEvent::from_value(v).unwrap_err();
            assert_eq!(err.field(), Some(field), "{err}");
        }
        let big = vec![b' '; MAX_EVENT_BYTES + 1];
        assert_eq!(
            UsageEvent::decode(&big),
            Err(EventError::TooLarge {
                size: MAX_EVENT_BYTES + 1
            })
        );
        assert_eq!(UsageEvent::decode(b"[1]"), Err(EventError::NotAnObject));
    }

    proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = UsageEvent::decode(&bytes);
        }

        /// The fast path accepts only what the general path accepts, and
        /// yields the same event.
        #[test]
        fn the_fast_path_agrees_with_the_general_path(
            id in proptest::option::of("[a-z\\\\\"é]{0,5}"),
            subject in proptest::option::of(prop_oneof![Just(Value::Null), "[a-z]{0,3}".prop_map(Value::from), Just(Value::from(3))]),
            spec in prop_oneof![Just(Value::from("1.0")), Just(Value::from("0.3")), Just(Value::Null), Just(Value::from(1))],
            time in prop_oneof![Just(Value::from("2026-11-28T10:00:00Z")), Just(Value::from("2026-11-28T10:00:00.123456+02:00")), Just(Value::from("nope")), Just(Value::Null)],
            data in prop_oneof![Just(Value::Null), Just(serde_json::json!({"n": 1, "m": {"x": "y"}})), Just(serde_json::json!([1])), Just(serde_json::json!({}))],
            ct in proptest::option::of(prop_oneof![Just(Value::Null), Just(Value::from("application/json")), Just(Value::from("text/xml"))]),
            long_id in any::<bool>(),
        ) {
            let mut obj = Map::new();
            obj.insert("specversion".into(), spec);
            if let Some(id) = id {
                let id = if long_id { id.repeat(60) } else { id };
                obj.insert("id".into(), Value::from(id));
            }
            obj.insert("source".into(), Value::from("//s"));
            obj.insert("type".into(), Value::from("t"));
            if let Some(s) = subject { obj.insert("subject".into(), s); }
            obj.insert("time".into(), time);
            obj.insert("data".into(), data);
            if let Some(ct) = ct { obj.insert("datacontenttype".into(), ct); }
            let bytes = Value::Object(obj).to_string().into_bytes();
            let general = UsageEvent::decode_general(&bytes);
            match UsageEvent::decode_valid(&bytes) {
                Some(fast) => prop_assert_eq!(Ok(fast), general),
                None => prop_assert!(general.is_err(), "the fast path declined a valid event"),
            }
        }

        #[test]
        fn decoding_arbitrary_json_never_panics(s in "\\PC{0,300}") {
            let _ = UsageEvent::decode(s.as_bytes());
            let wrapped = format!("{{\"specversion\":\"1.0\",\"id\":\"a\",\"source\":\"b\",\"type\":\"c\",\"time\":{s:?},\"data\":{{}}}}");
            let _ = UsageEvent::decode(wrapped.as_bytes());
        }
    }
}

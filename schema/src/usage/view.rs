//! A borrowed view of one usage event for the hot paths (the intake and the
//! aggregator's fold): the envelope's strings and `data`'s members stay in
//! the input bytes, and a value is read at a path only when a meter asks for
//! it. Numbers are read from their JSON text, so they are exact at any
//! precision. Whatever the view does not take (unusual but valid events,
//! and every invalid one) goes through [`UsageEvent::decode`], which gives
//! the same event or the exact reason.

use std::borrow::Cow;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::event::{EventError, UsageEvent, MAX_EVENT_BYTES, MAX_ID_LEN, MAX_SOURCE_LEN};

/// A valid event, mostly borrowed from its bytes.
#[derive(Debug)]
pub struct EventView<'a> {
    pub id: Cow<'a, str>,
    pub source: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub subject: Option<Cow<'a, str>>,
    pub time: DateTime<Utc>,
    data: Data<'a>,
}

#[derive(Debug)]
enum Data<'a> {
    /// The members of `data`, each as its raw JSON text.
    Raw(Members<'a>),
    /// Taken from the general decoder.
    Owned(Map<String, Value>),
}

/// One value of `data`, as a meter reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scalar<'v> {
    Null,
    Bool(bool),
    /// The number's JSON text.
    Number(Cow<'v, str>),
    Text(Cow<'v, str>),
    /// An object or an array.
    Composite,
}

impl<'v> Scalar<'v> {
    fn of_value(v: &'v Value) -> Scalar<'v> {
        match v {
            Value::Null => Scalar::Null,
            Value::Bool(b) => Scalar::Bool(*b),
            Value::Number(n) => Scalar::Number(Cow::Owned(n.to_string())),
            Value::String(s) => Scalar::Text(Cow::Borrowed(s)),
            Value::Array(_) | Value::Object(_) => Scalar::Composite,
        }
    }

    fn of_raw(raw: &'v RawValue) -> Scalar<'v> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'"') => {
                let inner = &text[1..text.len() - 1];
                if inner.contains('\\') {
                    // Escapes: let serde_json undo them (valid: it parsed).
                    serde_json::from_str::<String>(text)
                        .map(|s| Scalar::Text(Cow::Owned(s)))
                        .unwrap_or(Scalar::Composite)
                } else {
                    Scalar::Text(Cow::Borrowed(inner))
                }
            }
            Some(b'{' | b'[') => Scalar::Composite,
            Some(b't') => Scalar::Bool(true),
            Some(b'f') => Scalar::Bool(false),
            Some(b'n') => Scalar::Null,
            _ => Scalar::Number(Cow::Borrowed(text)),
        }
    }
}

/// An object's members in order, values unparsed.
#[derive(Debug, Default)]
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'a> Members<'a> {
    /// The last member named `key` (as a JSON map keeps the last duplicate).
    fn get(&self, key: &str) -> Option<&'a RawValue> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| *v)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<Text<'de>, &'de RawValue>()? {
                    members.push((k.0, v));
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(V)
    }
}

/// A string borrowed from the input unless it had escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s.to_owned())))
            }
            fn visit_string<E>(self, s: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(s)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The envelope as the fast path reads it; any field of the wrong JSON type
/// fails the parse, and the general path then names it.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    specversion: Option<Text<'a>>,
    #[serde(borrow)]
    id: Option<Text<'a>>,
    #[serde(borrow)]
    source: Option<Text<'a>>,
    #[serde(borrow, rename = "type")]
    event_type: Option<Text<'a>>,
    #[serde(borrow)]
    subject: Option<Text<'a>>,
    #[serde(borrow)]
    time: Option<Text<'a>>,
    // Present-but-null must not read as absent: the general path rejects a
    // null content type, so the raw value is kept.
    #[serde(default, borrow, deserialize_with = "present")]
    datacontenttype: Option<&'a RawValue>,
    #[serde(borrow)]
    data: Option<Members<'a>>,
}

fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue as Deserialize>::deserialize(d).map(Some)
}

/// Non-empty and at most `max` characters (bytes first: the cheap bound).
fn fits(s: &str, max: usize) -> bool {
    !s.is_empty() && (s.len() <= max || s.chars().count() <= max)
}

impl<'a> EventView<'a> {
    /// Decodes and validates one event; the same verdict as
    /// [`UsageEvent::decode`] (property-tested).
    pub fn decode(bytes: &'a [u8]) -> Result<EventView<'a>, EventError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self::decode_text(text),
            // Not UTF-8, so not JSON: the general path says where.
            Err(_) => UsageEvent::decode(bytes).map(EventView::from),
        }
    }

    /// [`EventView::decode`] of text already known to be UTF-8 (parsing
    /// a `str` skips serde_json's own UTF-8 checks).
    pub fn decode_text(text: &'a str) -> Result<EventView<'a>, EventError> {
        if text.len() > MAX_EVENT_BYTES {
            return Err(EventError::TooLarge { size: text.len() });
        }
        if let Some(view) = Self::decode_valid(text) {
            return Ok(view);
        }
        UsageEvent::decode(text.as_bytes()).map(EventView::from)
    }

    /// The fast path: `None` for anything unusual.
    pub(super) fn decode_valid(text: &'a str) -> Option<EventView<'a>> {
        let w: Wire<'a> = serde_json::from_str(text).ok()?;
        let required = |v: Option<Text<'a>>, max: usize| v.map(|t| t.0).filter(|s| fits(s, max));
        if w.specversion.as_ref().map(|t| &*t.0) != Some("1.0") {
            return None;
        }
        if w.datacontenttype
            .is_some_and(|ct| ct.get() != "\"application/json\"")
        {
            return None;
        }
        let subject = match w.subject {
            None => None,
            Some(s) if fits(&s.0, MAX_ID_LEN) => Some(s.0),
            Some(_) => return None,
        };
        let time_text = w.time.as_ref().map(|t| &*t.0).filter(|t| fits(t, 64))?;
        let time = DateTime::parse_from_rfc3339(time_text)
            .ok()?
            .with_timezone(&Utc);
        Some(EventView {
            id: required(w.id, MAX_ID_LEN)?,
            source: required(w.source, MAX_SOURCE_LEN)?,
            event_type: required(w.event_type, MAX_ID_LEN)?,
            subject,
            time,
            data: Data::Raw(w.data?),
        })
    }

    /// The value at a dot-separated path into `data` (`"usage.bytes"`).
    pub fn value_at(&self, path: &str) -> Option<Scalar<'_>> {
        let mut parts = path.split('.');
        let first = parts.next()?;
        match &self.data {
            Data::Owned(map) => {
                let mut current = map.get(first)?;
                for part in parts {
                    current = current.as_object()?.get(part)?;
                }
                Some(Scalar::of_value(current))
            }
            Data::Raw(members) => {
                let mut current = members.get(first)?;
                for part in parts {
                    let inner: Members<'_> = serde_json::from_str(current.get()).ok()?;
                    current = inner.get(part)?;
                }
                Some(Scalar::of_raw(current))
            }
        }
    }
}

impl EventView<'_> {
    /// The owned event (`None` only if a member's text would not parse,
    /// which cannot happen for text the view has parsed).
    pub fn into_owned(self) -> Option<UsageEvent> {
        let data = match self.data {
            Data::Owned(map) => map,
            Data::Raw(members) => {
                let mut map = Map::new();
                for (k, v) in members.0 {
                    map.insert(k.into_owned(), serde_json::from_str(v.get()).ok()?);
                }
                map
            }
        };
        Some(UsageEvent {
            id: self.id.into_owned(),
            source: self.source.into_owned(),
            event_type: self.event_type.into_owned(),
            subject: self.subject.map(Cow::into_owned),
            time: self.time,
            data,
        })
    }
}

impl From<UsageEvent> for EventView<'_> {
    fn from(e: UsageEvent) -> Self {
        EventView {
            id: Cow::Owned(e.id),
            source: Cow::Owned(e.source),
            event_type: Cow::Owned(e.event_type),
            subject: e.subject.map(Cow::Owned),
            time: e.time,
            data: Data::Owned(e.data),
        }
    }
}

impl UsageEvent {
    /// The value at a path as a meter reads it (the view's reading of an
    /// owned event).
    pub fn scalar_at(&self, path: &str) -> Option<Scalar<'_>> {
        self.value_at(path).map(Scalar::of_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn bytes(v: &Value) -> Vec<u8> {
        v.to_string().into_bytes()
    }

    #[test]
    fn values_read_at_paths_borrow_and_stay_exact() {
        let raw = bytes(&json!({
            "specversion": "1.0", "id": "e\"1", "source": "s", "type": "t",
            "time": "2026-11-28T10:00:00Z",
            "data": {"n": 0.5, "s": "a\\b", "o": {"deep": "x"}, "z": null, "b": false, "l": [1]}
        }));
        let v = EventView::decode(&raw).unwrap();
        assert_eq!(v.id, "e\"1");
        assert!(matches!(v.source, Cow::Borrowed(_)));
        assert_eq!(v.value_at("n"), Some(Scalar::Number("0.5".into())));
        assert_eq!(v.value_at("s"), Some(Scalar::Text("a\\b".into())));
        assert_eq!(v.value_at("o.deep"), Some(Scalar::Text("x".into())));
        assert_eq!(v.value_at("o"), Some(Scalar::Composite));
        assert_eq!(v.value_at("l"), Some(Scalar::Composite));
        assert_eq!(v.value_at("z"), Some(Scalar::Null));
        assert_eq!(v.value_at("b"), Some(Scalar::Bool(false)));
        assert_eq!(v.value_at("o.nope"), None);
        assert_eq!(v.value_at("s.x"), None);
        let exact = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2026-11-28T10:00:00Z","data":{"n":0.12345678901234567890123}}"#;
        assert_eq!(
            EventView::decode(exact).unwrap().value_at("n"),
            Some(Scalar::Number("0.12345678901234567890123".into())),
            "numbers are read from their text, never through a float"
        );
    }

    #[test]
    fn duplicate_keys_take_the_last_like_the_general_path() {
        let raw = br#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"2026-11-28T10:00:00Z","data":{"n":1,"n":2}}"#;
        let v = EventView::decode(raw).unwrap();
        assert_eq!(v.value_at("n"), Some(Scalar::Number("2".into())));
        let general = UsageEvent::decode(raw).unwrap();
        assert_eq!(general.scalar_at("n"), Some(Scalar::Number("2".into())));
    }

    proptest! {
        /// The view accepts exactly what the general decoder accepts, with
        /// the same envelope and the same values at every path.
        #[test]
        fn the_view_agrees_with_the_general_decoder(
            id in proptest::option::of("[a-z\\\\\"é]{0,5}"),
            subject in proptest::option::of(prop_oneof![Just(Value::Null), "[a-z]{0,3}".prop_map(Value::from), Just(Value::from(3))]),
            spec in prop_oneof![Just(Value::from("1.0")), Just(Value::from("0.3")), Just(Value::Null), Just(Value::from(1))],
            time in prop_oneof![Just(Value::from("2026-11-28T10:00:00Z")), Just(Value::from("2026-11-28T10:00:00.123456+02:00")), Just(Value::from("nope")), Just(Value::Null)],
            data in prop_oneof![
                Just(Value::Null), Just(json!([1])), Just(json!({})),
                (any::<i64>(), "[a-z\\\\\"]{0,4}", any::<bool>()).prop_map(|(n, s, b)| json!({"n": n, "s": s, "m": {"x": s, "b": b}, "f": 2.5, "z": null}))
            ],
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
            let raw = bytes(&Value::Object(obj));
            let general = UsageEvent::decode_general(&raw);
            let fast = EventView::decode_valid(std::str::from_utf8(&raw).unwrap());
            match (&general, fast) {
                (Ok(g), Some(v)) => {
                    prop_assert_eq!(&g.id, &v.id);
                    prop_assert_eq!(&g.source, &v.source);
                    prop_assert_eq!(&g.event_type, &v.event_type);
                    prop_assert_eq!(g.subject.as_deref(), v.subject.as_deref());
                    prop_assert_eq!(g.time, v.time);
                    for path in ["n", "s", "m", "m.x", "m.b", "f", "z", "nope", "s.x"] {
                        prop_assert_eq!(g.scalar_at(path), v.value_at(path), "at {}", path);
                    }
                }
                (Ok(_), None) => prop_assert!(false, "the fast path declined a valid event"),
                (Err(_), Some(_)) => prop_assert!(false, "the fast path took an invalid event"),
                (Err(e), None) => prop_assert_eq!(EventView::decode(&raw).unwrap_err(), e.clone()),
            }
        }
    }
}

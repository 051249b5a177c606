//! Request bodies of `POST /v1/events`: one event
//! (`application/cloudevents+json`) or a batch
//! (`application/cloudevents-batch+json`, a JSON array). A bad event never
//! blocks the good ones beside it: the body yields one verdict per element,
//! in order; only a body that is not a batch at all is refused whole.

use dotmac_schema::usage::{EventError, EventView, MAX_EVENT_BYTES, MAX_EVENT_VALUE};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

/// Most events accepted in one batch.
pub const MAX_BATCH_EVENTS: usize = 1000;

/// Why a whole body is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("content-type must be application/cloudevents+json or application/cloudevents-batch+json, not {0:?}")]
    UnsupportedMediaType(String),
    #[error("body is not a JSON array of events: {0}")]
    NotABatch(String),
    #[error("a batch holds at most {MAX_BATCH_EVENTS} events (got {0})")]
    TooManyEvents(usize),
    #[error("a batch must hold at least one event")]
    Empty,
}

/// The media type without parameters (`; charset=utf-8`), lowercased.
fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// One verdict per event of the body, in order.
pub fn parse_body<'a>(
    content_type: &str,
    body: &'a [u8],
) -> Result<Vec<Result<EventView<'a>, EventError>>, BatchError> {
    Ok(parse_body_raw(content_type, body)?
        .into_iter()
        .map(|v| v.map(|(event, _)| event))
        .collect())
}

/// One event's verdict, with its exact bytes when accepted.
pub type RawVerdict<'a> = Result<(EventView<'a>, &'a [u8]), EventError>;

/// As [`parse_body`], with each accepted event's exact bytes, which are what
/// the intake produces to Kafka.
pub fn parse_body_raw<'a>(
    content_type: &str,
    body: &'a [u8],
) -> Result<Vec<RawVerdict<'a>>, BatchError> {
    match media_type(content_type).as_str() {
        "application/cloudevents+json" => Ok(vec![verdict(body)]),
        "application/cloudevents-batch+json" => {
            // Raw elements keep each event's exact bytes, so the per-event
            // size limit applies to what the producer actually sent.
            let elements: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(|e| BatchError::NotABatch(e.to_string()))?;
            if elements.is_empty() {
                return Err(BatchError::Empty);
            }
            if elements.len() > MAX_BATCH_EVENTS {
                return Err(BatchError::TooManyEvents(elements.len()));
            }
            Ok(elements
                .into_iter()
                .map(|raw| {
                    let bytes = raw.get().as_bytes();
                    if bytes.len() > MAX_EVENT_BYTES {
                        return Err(EventError::TooLarge { size: bytes.len() });
                    }
                    verdict(bytes)
                })
                .collect())
        }
        other => Err(BatchError::UnsupportedMediaType(other.to_owned())),
    }
}

/// One event's verdict: decodable, and no JSON number in it beyond
/// [`MAX_EVENT_VALUE`] (a meter reading it would refuse the event anyway;
/// identifiers that long belong in strings).
fn verdict(bytes: &[u8]) -> RawVerdict<'_> {
    let event = EventView::decode(bytes)?;
    if let Some(number) = first_number_beyond_bound(bytes) {
        return Err(EventError::Invalid {
            field: "data",
            reason: format!(
                "the number {number} is beyond 10^15 in magnitude; numbers are at most 10^15 \
                 (send identifiers as strings)"
            ),
        });
    }
    Ok((event, bytes))
}

/// The first JSON number token of `json` (outside strings) whose magnitude
/// exceeds [`MAX_EVENT_VALUE`], as written. The text is valid JSON already.
fn first_number_beyond_bound(json: &[u8]) -> Option<&str> {
    let mut i = 0;
    while i < json.len() {
        match json[i] {
            b'"' => {
                // Skip the string, escapes included.
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while i < json.len()
                    && matches!(json[i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                {
                    i += 1;
                }
                let token = std::str::from_utf8(&json[start..i]).unwrap_or_default();
                // Without an exponent, fewer than 16 integer digits cannot
                // exceed 10^15: only the rest is parsed (the hot path stays
                // a scan).
                let integer_digits = token
                    .trim_start_matches('-')
                    .split('.')
                    .next()
                    .map_or(0, str::len);
                if token.contains(['e', 'E']) || integer_digits >= 16 {
                    let value = token
                        .parse::<Decimal>()
                        .or_else(|_| Decimal::from_scientific(token));
                    if value.map_or(true, |v| v.abs() > MAX_EVENT_VALUE) {
                        return Some(token);
                    }
                }
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const BATCH: &str = "application/cloudevents-batch+json; charset=utf-8";

    fn event(id: &str) -> serde_json::Value {
        json!({ "specversion": "1.0", "id": id, "source": "s", "type": "t",
                "time": "2026-11-28T10:00:00Z", "data": { "n": 1 } })
    }

    #[test]
    fn numbers_beyond_the_bound_are_refused_naming_data() {
        let with = |n: &str| {
            format!(
                r#"{{"specversion":"1.0","id":"x","source":"s","type":"t","time":"2026-11-28T10:00:00Z","data":{{"n":{n},"s":"99999999999999999999"}}}}"#
            )
        };
        for ok in [
            "1",
            "-1",
            "1000000000000000",
            "-1000000000000000",
            "0.000000000000000001",
            "1e15",
            "12345.678901234567",
        ] {
            let body = with(ok);
            let v = parse_body("application/cloudevents+json", body.as_bytes()).unwrap();
            assert!(v[0].is_ok(), "{ok}: {:?}", v[0]);
        }
        for bad in [
            "5e28",
            "1000000000000001",
            "-1000000000000001",
            "1e16",
            "1E400",
            "123456789012345678901234567890",
        ] {
            let body = with(bad);
            let v = parse_body("application/cloudevents+json", body.as_bytes()).unwrap();
            let e = v[0].as_ref().unwrap_err();
            assert_eq!(e.field(), Some("data"), "{bad}");
            assert!(e.to_string().contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_events_do_not_block_good_ones() {
        let body = json!([event("a"), { "specversion": "1.0" }, event("c"), 42]).to_string();
        let verdicts = parse_body(BATCH, body.as_bytes()).unwrap();
        assert_eq!(verdicts.len(), 4);
        assert_eq!(verdicts[0].as_ref().unwrap().id, "a");
        assert_eq!(verdicts[1].as_ref().unwrap_err().field(), Some("id"));
        assert_eq!(verdicts[2].as_ref().unwrap().id, "c");
        assert_eq!(verdicts[3].as_ref().unwrap_err(), &EventError::NotAnObject);
    }

    #[test]
    fn whole_body_refusals() {
        assert!(matches!(
            parse_body("text/plain", b"[]"),
            Err(BatchError::UnsupportedMediaType(_))
        ));
        assert!(matches!(
            parse_body(BATCH, b"{}"),
            Err(BatchError::NotABatch(_))
        ));
        assert_eq!(parse_body(BATCH, b"[]").unwrap_err(), BatchError::Empty);
        let many = serde_json::Value::Array(
            (0..=MAX_BATCH_EVENTS)
                .map(|i| event(&i.to_string()))
                .collect(),
        );
        assert_eq!(
            parse_body(BATCH, many.to_string().as_bytes()).unwrap_err(),
            BatchError::TooManyEvents(MAX_BATCH_EVENTS + 1)
        );
        let single_body = event("x").to_string();
        let single = parse_body("application/cloudevents+json", single_body.as_bytes()).unwrap();
        assert_eq!(single[0].as_ref().unwrap().id, "x");
    }

    #[test]
    fn an_oversize_element_is_rejected_alone() {
        let mut big = event("big");
        big["data"]["pad"] = json!("x".repeat(MAX_EVENT_BYTES));
        let body = json!([event("a"), big]).to_string();
        let verdicts = parse_body(BATCH, body.as_bytes()).unwrap();
        assert!(verdicts[0].is_ok());
        assert!(matches!(verdicts[1], Err(EventError::TooLarge { .. })));
    }

    proptest! {
        #[test]
        fn arbitrary_bodies_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = parse_body(BATCH, &bytes);
            let _ = parse_body("application/cloudevents+json", &bytes);
        }

        #[test]
        fn one_verdict_per_element_in_order(ids in proptest::collection::vec("[a-z]{0,4}", 1..40)) {
            let body = serde_json::Value::Array(ids.iter().map(|i| event(i)).collect()).to_string();
            let verdicts = parse_body(BATCH, body.as_bytes()).unwrap();
            prop_assert_eq!(verdicts.len(), ids.len());
            for (v, id) in verdicts.iter().zip(&ids) {
                match v {
                    Ok(e) => prop_assert_eq!(&e.id, id),
                    Err(e) => prop_assert!(id.is_empty() && e.field() == Some("id")),
                }
            }
        }
    }
}

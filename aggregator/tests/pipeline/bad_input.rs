//! Bad input: malformed JSON, wrong types, oversize events, missing fields,
//! unknown or missing tenant keys and random bytes are dead-lettered with a
//! reason, while the good events beside them are counted.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::{event, Pipeline};

/// A Kafka record: key and bytes.
type Record = (Option<String>, Vec<u8>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_dead_lettered_with_reasons_and_good_ones_counted() {
    let p = Pipeline::start().await;
    p.meter(
        "calls",
        "call",
        Aggregation::Sum,
        Some("n"),
        &[],
        Window::Hour,
    );
    let tenant = p.tenant("acme-fiber");
    let now = p.clock.now().to_rfc3339();
    let good = |i: u32| {
        (
            Some(tenant.clone()),
            event(&format!("g{i}"), "call", &now, json!({ "n": i }))
                .to_string()
                .into_bytes(),
        )
    };
    let mut oversize = event("big", "call", &now, json!({ "n": 1 }));
    oversize["data"]["pad"] = json!("x".repeat(70 * 1024));
    let mut wrong_type = event("w", "call", &now, json!({ "n": 1 }));
    wrong_type["id"] = json!(42);
    let mut missing = event("m", "call", &now, json!({ "n": 1 }));
    missing.as_object_mut().unwrap().remove("source");
    let mut rng = StdRng::seed_from_u64(7);
    let random: Vec<u8> = (0..300).map(|_| rng.gen()).collect();
    let t = || Some(tenant.clone());
    let bad: Vec<(Record, &str)> = vec![
        ((t(), b"{\"specversion\": \"1.0\", ".to_vec()), "not JSON"),
        (
            (t(), wrong_type.to_string().into_bytes()),
            "id: must be a string",
        ),
        (
            (t(), oversize.to_string().into_bytes()),
            "bytes; at most 65536 are accepted",
        ),
        (
            (t(), missing.to_string().into_bytes()),
            "source: is required",
        ),
        (
            (
                t(),
                event("s", "call", &now, json!({ "n": "many" }))
                    .to_string()
                    .into_bytes(),
            ),
            "meter calls: data.n: must be a number",
        ),
        (
            (
                t(),
                event("huge", "call", &now, json!({ "n": "5e28" }))
                    .to_string()
                    .into_bytes(),
            ),
            "meter calls: data.n: must be at most 10^15 in magnitude",
        ),
        (
            (
                t(),
                event("minus", "call", &now, json!({ "n": -3 }))
                    .to_string()
                    .into_bytes(),
            ),
            "meter calls: data.n: must not be negative",
        ),
        (
            (Some("ten_nobody".into()), good(999).1),
            "key: unknown tenant \"ten_nobody\"",
        ),
        (
            (None, good(998).1),
            "key: a record's key must be its tenant id",
        ),
        ((t(), random), "not JSON"),
        ((t(), Vec::new()), "not JSON"),
    ];
    let mut records = Vec::new();
    for (i, (record, _)) in bad.iter().enumerate() {
        records.push(good(i as u32));
        records.push(record.clone());
    }
    records.push(good(100));
    let agg = p.spawn_aggregator();
    p.produce(&records).await;
    let totals = p
        .wait_for_records(records.len() as u64, Duration::from_secs(90))
        .await;
    assert_eq!(totals.dead_lettered, bad.len() as u64);
    assert_eq!(totals.accepted, bad.len() as u64 + 1);

    // The pipeline keeps running: events after the bad ones still count.
    p.produce(&[good(101)]).await;
    p.wait_for_records(records.len() as u64 + 1, Duration::from_secs(60))
        .await;
    agg.stop().await;
    let sum: rust_decimal::Decimal = p.rollups("calls").await.values().map(|s| s.value()).sum();
    let expected: u32 = (0..bad.len() as u32).sum::<u32>() + 100 + 101;
    assert_eq!(sum, rust_decimal::Decimal::from(expected));

    let letters = p.dead_letters(bad.len());
    assert_eq!(
        letters.len(),
        bad.len(),
        "every bad record reaches the dead-letter topic"
    );
    // Records of different partitions interleave on the dead-letter topic:
    // match each bad record by its exact key and bytes.
    for ((key, payload), reason) in &bad {
        let letter = letters
            .iter()
            .find(|(k, p, _)| k == key && p == payload)
            .unwrap_or_else(|| {
                panic!("no dead letter keeps the bytes of the record rejected for {reason:?}")
            });
        assert!(
            letter.2.contains(reason),
            "reason {:?} should contain {reason:?}",
            letter.2
        );
    }
    p.cleanup().await;
}

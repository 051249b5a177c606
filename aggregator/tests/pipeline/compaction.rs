//! #13.7: compaction of a closed bucket of windows. Parts written by many
//! flushes are merged into one row per key; every read (the rollups, each
//! tenant's total, the close's totals) answers the same before and after,
//! the bucket's parts are gone, and a window still open is not touched.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::json;

use dotmac_aggregator::compaction::compact_closed;
use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::{event, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_bucket_compacts_and_reads_the_same() {
    let p = Pipeline::start().await;
    p.meter(
        "samples",
        "sample",
        Aggregation::Sum,
        Some("n"),
        &["kind"],
        Window::Hour,
    );
    p.meter(
        "peaks",
        "sample",
        Aggregation::Max,
        Some("n"),
        &[],
        Window::Day,
    );
    let tenants = [p.tenant("acme-fiber"), p.tenant("comet-wireless")];
    let january: DateTime<Utc> = "2026-01-10T12:00:00Z".parse().unwrap();
    let november: DateTime<Utc> = "2026-11-16T12:00:00Z".parse().unwrap();
    let agg = p.spawn_aggregator();
    let mut sent = 0;
    // Five rounds, each its own flushes: several parts per key and window.
    for (at, rounds) in [(january, 5), (november, 2)] {
        p.clock.set(at);
        for round in 0..rounds {
            let records: Vec<_> = tenants
                .iter()
                .flat_map(|t| (0..20).map(move |i| (t.clone(), i)))
                .map(|(t, i)| {
                    (
                        Some(t),
                        event(
                            &format!("{at}-{round}-{i}"),
                            "sample",
                            &(at + TimeDelta::minutes(i)).to_rfc3339(),
                            json!({ "n": i * 3 + round, "kind": if i % 2 == 0 { "a" } else { "b" } }),
                        )
                        .to_string()
                        .into_bytes(),
                    )
                })
                .collect();
            sent += records.len() as u64;
            p.produce(&records).await;
            p.wait_for_records(sent, Duration::from_secs(60)).await;
        }
    }
    agg.stop().await;

    let reads = || async {
        (
            p.usage.rollups(None, "samples", 0, i64::MAX).await.unwrap(),
            p.usage.rollups(None, "peaks", 0, i64::MAX).await.unwrap(),
            p.usage.tenant_totals("samples", 0, i64::MAX).await.unwrap(),
            p.usage
                .meter_totals(&["samples".into(), "peaks".into()], 0, i64::MAX)
                .await
                .unwrap()
                .by_tenant_meter,
        )
    };
    let before = reads().await;
    let buckets_before = p.usage.rollup_buckets().await.unwrap();
    assert_eq!(buckets_before.len(), 2, "{buckets_before:?}");

    let done = compact_closed(&p.usage, november, TimeDelta::days(32))
        .await
        .unwrap();
    assert_eq!(done.len(), 1, "only January's bucket is closed: {done:?}");
    assert!(
        done[0].parts > done[0].rows,
        "several flushes' parts became one row per key: {done:?}"
    );
    assert_eq!(reads().await, before);
    let buckets_after = p.usage.rollup_buckets().await.unwrap();
    assert_eq!(buckets_after.len(), 1, "January's parts are dropped");
    assert!(!buckets_after.contains(&done[0].bucket));
    // Again: nothing more to do, and still the same answers.
    assert!(compact_closed(&p.usage, november, TimeDelta::days(32))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(reads().await, before);
    p.cleanup().await;
}

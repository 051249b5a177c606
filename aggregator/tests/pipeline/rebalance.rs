//! #13.5: a rebalance that gives a partition back to the aggregator that
//! held it, with nothing committed by anyone in between, does not read the
//! partition's dedupe keys from ClickHouse again (a horizon of 32 days of
//! keys, per partition, per rebalance); the keys it kept still find every
//! duplicate.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use dotmac_aggregator::testkit::RawRecord;
use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::{event, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_given_back_keeps_its_dedupe_keys() {
    let p = Pipeline::start().await;
    p.meter(
        "samples",
        "sample",
        Aggregation::Sum,
        Some("n"),
        &[],
        Window::Hour,
    );
    let tenants = [p.tenant("acme-fiber"), p.tenant("comet-wireless")];
    let now = p.clock.now().to_rfc3339();
    let records = |prefix: &str| -> Vec<RawRecord> {
        tenants
            .iter()
            .flat_map(|t| (0..50).map(move |i| (t.clone(), i)))
            .map(|(t, i)| {
                (
                    Some(t),
                    event(&format!("{prefix}-{i}"), "sample", &now, json!({ "n": 1 }))
                        .to_string()
                        .into_bytes(),
                )
            })
            .collect()
    };
    let a = p.spawn_aggregator();
    let stats = a.stats.clone();
    p.produce(&records("first")).await;
    p.wait_for_records(100, Duration::from_secs(60)).await;
    let reloads = stats.dedupe_reloads.load(Ordering::Relaxed);
    assert!(reloads >= 1, "the first takeover reads the keys");

    // A second member joins, then leaves: every partition is revoked and
    // handed out, then given back; nobody commits in between.
    let b = p.spawn_aggregator();
    tokio::time::sleep(Duration::from_secs(10)).await;
    b.stop().await;
    tokio::time::sleep(Duration::from_secs(8)).await;

    p.produce(&records("first")).await;
    p.produce(&records("second")).await;
    let totals = p.wait_for_records(300, Duration::from_secs(90)).await;
    a.stop().await;
    assert_eq!(
        (totals.accepted, totals.duplicates),
        (200, 100),
        "{totals:?}"
    );
    assert!(
        stats.dedupe_kept.load(Ordering::Relaxed) >= 1,
        "no partition came back with its keys"
    );
    assert_eq!(
        stats.dedupe_reloads.load(Ordering::Relaxed),
        reloads,
        "a partition given back read its keys from ClickHouse again"
    );
    p.cleanup().await;
}

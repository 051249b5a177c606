//! #13.6: zombie fencing. An aggregator frozen between writing a batch and
//! committing it loses its partitions to another member; the other one
//! claims them (a higher epoch) and counts every event; then the frozen one
//! wakes and commits its batch. That batch overlaps its successor's and is
//! fenced: written, never counted.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rust_decimal::Decimal;
use serde_json::json;

use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::{event, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_paused_across_a_rebalance_counts_nothing() {
    let p = Pipeline::start().await;
    p.meter(
        "samples",
        "sample",
        Aggregation::Sum,
        Some("n"),
        &[],
        Window::Hour,
    );
    let tenant = p.tenant("acme-fiber");
    let now = p.clock.now().to_rfc3339();
    let count: u64 = 600;
    let records: Vec<_> = (0..count)
        .map(|i| {
            (
                Some(tenant.clone()),
                event(&format!("e-{i}"), "sample", &now, json!({ "n": 1 }))
                    .to_string()
                    .into_bytes(),
            )
        })
        .collect();
    p.produce(&records).await;

    // The zombie: the group gives up on a member that does not poll for 8 s,
    // and this one freezes for 25 s between its first write and its commit.
    let mut frozen = p.config.clone();
    frozen.max_poll_interval_ms = 8_000;
    frozen.commit_pause = Some(Duration::from_secs(25));
    let zombie = p.spawn_aggregator_with(frozen);
    let started = Instant::now();
    while zombie.stats.consumed.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the first member consumed nothing"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Its first flush is frozen now; the successor joins and, once the
    // group has given up on the zombie, claims every partition.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let successor = p.spawn_aggregator();
    let totals = p.wait_for_records(count, Duration::from_secs(90)).await;
    assert_eq!(totals.accepted, count, "{totals:?}");

    // The zombie wakes and commits the batch it wrote before it lost them.
    while zombie.stats.flushes.load(Ordering::Relaxed) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the zombie never committed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fenced = p.usage.fenced_batches().await.unwrap();
    assert!(fenced >= 1, "the zombie's batch was committed unfenced");
    // Whatever happens after (the zombie rejoins, partitions move again),
    // every event counts once.
    tokio::time::sleep(Duration::from_secs(3)).await;
    zombie.stop().await;
    successor.stop().await;
    let after = p.usage.totals().await.unwrap();
    assert_eq!(after.accepted, count, "{after:?}");
    let total: Decimal = p.rollups("samples").await.values().map(|s| s.value()).sum();
    assert_eq!(total, Decimal::from(count));
    p.cleanup().await;
}

//! #13.7: raw-event retention drops the 30-day buckets of `usage_raw` that
//! end before the cutoff, keeps everything after it, and leaves the rollups
//! (what bills) untouched.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rust_decimal::Decimal;
use serde_json::json;

use dotmac_aggregator::retention::{drop_expired_raw, Retention};
use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::{event, Pipeline};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_events_past_retention_go_and_the_rest_stay() {
    let p = Pipeline::start().await;
    p.meter(
        "samples",
        "sample",
        Aggregation::Sum,
        Some("n"),
        &[],
        Window::Day,
    );
    let tenant = p.tenant("acme-fiber");
    let records = |prefix: &str, at: DateTime<Utc>, n: usize| {
        (0..n)
            .map(|i| {
                (
                    Some(tenant.clone()),
                    event(
                        &format!("{prefix}-{i}"),
                        "sample",
                        &at.to_rfc3339(),
                        json!({ "n": 1 }),
                    )
                    .to_string()
                    .into_bytes(),
                )
            })
            .collect::<Vec<_>>()
    };
    let january: DateTime<Utc> = "2026-01-10T12:00:00Z".parse().unwrap();
    let november: DateTime<Utc> = "2026-11-16T12:00:00Z".parse().unwrap();
    let agg = p.spawn_aggregator();
    // Each batch is folded while the clock stands at its time.
    p.clock.set(january);
    p.produce(&records("jan", january, 40)).await;
    p.wait_for_records(40, Duration::from_secs(60)).await;
    p.clock.set(november);
    p.produce(&records("nov", november, 25)).await;
    p.wait_for_records(65, Duration::from_secs(60)).await;
    agg.stop().await;
    assert_eq!(p.usage.committed_raw_count().await.unwrap(), 65);

    let retention = Retention {
        keep: TimeDelta::days(30),
        dedupe_horizon: TimeDelta::days(32),
        grace: TimeDelta::days(3),
    };
    let cutoff = retention.raw_cutoff(november);
    assert_eq!(
        cutoff,
        "2026-10-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    let dropped = drop_expired_raw(&p.usage, cutoff).await.unwrap();
    assert_eq!(dropped.len(), 1, "{dropped:?}");
    assert_eq!(p.usage.committed_raw_count().await.unwrap(), 25);
    // Running again drops nothing more.
    assert!(drop_expired_raw(&p.usage, cutoff).await.unwrap().is_empty());
    // What bills is the rollups, which stay.
    let total: Decimal = p.rollups("samples").await.values().map(|s| s.value()).sum();
    assert_eq!(total, Decimal::from(65));
    p.cleanup().await;
}

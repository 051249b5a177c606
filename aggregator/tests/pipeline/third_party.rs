//! A client nobody here wrote: events produced by kafka-python (PyPI) are
//! aggregated exactly like our own producer's.

use std::process::Command;
use std::time::Duration;

use rust_decimal::Decimal;

use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::Pipeline;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_events_are_aggregated() {
    let p = Pipeline::start().await;
    p.meter(
        "py-n",
        "py.sample",
        Aggregation::Sum,
        Some("n"),
        &["kind"],
        Window::Hour,
    );
    let tenant = p.tenant("acme-fiber");
    let count = 500u32;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/pipeline/kafka_python_producer.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            &p.config.brokers,
            &p.config.topics.events,
            &tenant,
            &count.to_string(),
            &p.clock.now().to_rfc3339(),
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "kafka-python producer failed (deploy/local/pipeline-services.sh installs kafka-python): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let agg = p.spawn_aggregator();
    let totals = p
        .wait_for_records(u64::from(count), Duration::from_secs(90))
        .await;
    agg.stop().await;
    assert_eq!(totals.accepted, u64::from(count));
    let by_kind: Vec<(String, Decimal)> = p
        .rollups("py-n")
        .await
        .into_iter()
        .map(|(k, s)| (k.group[0].1.clone(), s.value()))
        .collect();
    let even: u32 = (0..count).filter(|i| i % 2 == 0).sum();
    let odd: u32 = (0..count).filter(|i| i % 2 == 1).sum();
    assert_eq!(
        by_kind,
        vec![
            ("even".into(), Decimal::from(even)),
            ("odd".into(), Decimal::from(odd))
        ]
    );
    p.cleanup().await;
}

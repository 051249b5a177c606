//! #13.4: dedupe holds whatever path an event takes. The same events sent
//! through the HTTP intake, by kafka-python (Kafka's murmur2 partitioner)
//! and by a producer that puts them on a partition not owning their key
//! (librdkafka's default partitioner does that to most keys) are counted
//! once: the platform's producers place keys as Kafka's clients do, and the
//! aggregator moves a record found elsewhere to the partition that owns it,
//! where the dedupe set decides.

use std::process::Command;
use std::time::Duration;

use dotmac_ingest::partition::owning_partition;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::harness::Pipeline;
use crate::intake::{api_key, post, BATCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_event_sent_by_every_path_is_counted_once() {
    let p = Pipeline::start().await;
    p.create_meter(json!({
        "slug": "py-n", "name": "n", "eventType": "py.sample", "aggregation": "SUM",
        "valuePath": "n", "groupBy": ["kind"], "window": "HOUR"
    }))
    .await;
    let tenant = p.tenant("acme-fiber");
    let count: u64 = 300;
    let now = p.server.clock.now().to_rfc3339();
    // The events kafka_python_producer.py sends, as JSON.
    let events: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "specversion": "1.0", "id": format!("py-{i}"), "source": "//isp/python",
                "type": "py.sample", "time": now,
                "data": { "n": i, "kind": if i % 2 == 0 { "even" } else { "odd" } }
            })
        })
        .collect();

    // 1. kafka-python, keyed by the tenant.
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../aggregator/tests/pipeline/kafka_python_producer.py"
    );
    let topic = p.config.pipeline.events_topic.clone();
    let out = Command::new("python3")
        .args([
            script,
            &p.config.kafka_brokers,
            &topic,
            &tenant,
            &count.to_string(),
            &now,
        ])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "kafka-python producer failed (deploy/local/pipeline-services.sh installs kafka-python): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // 2. The HTTP intake, with the tenant's key: the retry a 503 invites.
    let key = api_key(&p, &tenant, "USAGE_WRITE").await;
    let (status, answer) = post(
        &p,
        Some(&key),
        BATCH,
        Value::from(events.clone()).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    // 3. A producer whose partitioner puts every record elsewhere.
    let partitions = p.config.pipeline.partitions;
    let elsewhere = (owning_partition(tenant.as_bytes(), partitions) + 1) % partitions;
    let producer: FutureProducer =
        dotmac_ingest::kafka::client_config(&p.config.kafka_brokers, &p.config.kafka_security)
            .create()
            .unwrap();
    for e in &events {
        let bytes = e.to_string();
        producer
            .send(
                FutureRecord::to(&topic)
                    .partition(elsewhere)
                    .key(tenant.as_str())
                    .payload(bytes.as_str()),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("acknowledged");
    }

    let agg = p.spawn_aggregator();
    // Three copies of each event, and the copy moved to the owner.
    let totals = p
        .wait_for_records(4 * count, Duration::from_secs(120))
        .await;
    agg.stop().await;
    assert_eq!(totals.accepted, count, "{totals:?}");
    assert_eq!(totals.duplicates, 2 * count, "{totals:?}");
    assert_eq!(totals.forwarded, count, "{totals:?}");
    assert_eq!(totals.dead_lettered, 0, "{totals:?}");
    let by_kind: Vec<(String, Decimal)> = p
        .rollups("py-n")
        .await
        .into_iter()
        .map(|(k, s)| (k.group[0].1.clone(), s.value()))
        .collect();
    let even: u64 = (0..count).filter(|i| i % 2 == 0).sum();
    let odd: u64 = (0..count).filter(|i| i % 2 == 1).sum();
    assert_eq!(
        by_kind,
        vec![
            ("even".to_owned(), Decimal::from(even)),
            ("odd".to_owned(), Decimal::from(odd))
        ]
    );
    p.cleanup().await;
}

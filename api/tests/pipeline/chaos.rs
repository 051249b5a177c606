//! Chaos: 200,000 events while the aggregator (the real `dotmac aggregate`
//! process) is killed with SIGKILL at random moments five times, ClickHouse
//! is restarted once and the broker (postgres storage, so its log survives)
//! once (its sqlite storage engine keeps its log across the restart). The
//! totals must be exact: zero lost, zero double-counted. Runs on its own
//! ClickHouse server and broker so the restarts touch no other test.

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use dotmac_aggregator::testkit::{kill9, OwnBroker, OwnClickHouse};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;

use crate::harness::{event, Pipeline};

const EVENTS: usize = 200_000;
const KILLS: usize = 5;

fn spawn_aggregator(p: &Pipeline, log: &Path) -> Child {
    let c = &p.config;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .arg("aggregate")
        .env("DOTMAC_DATABASE_URL", &c.database_url)
        .env("DOTMAC_KAFKA_BROKERS", &c.kafka_brokers)
        .env("DOTMAC_CLICKHOUSE_URL", &c.clickhouse_url)
        .env("DOTMAC_CLICKHOUSE_DATABASE", &c.clickhouse_database)
        .env("DOTMAC_PIPELINE__EVENTS_TOPIC", &c.pipeline.events_topic)
        .env(
            "DOTMAC_PIPELINE__DEAD_LETTER_TOPIC",
            &c.pipeline.dead_letter_topic,
        )
        .env("DOTMAC_PIPELINE__GROUP_ID", &c.pipeline.group_id)
        .env("DOTMAC_PIPELINE__FLUSH_MS", "200")
        .env("DOTMAC_PIPELINE__MAX_POLL_INTERVAL_MS", "10000")
        .env("DOTMAC_LOG", "info")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("the dotmac binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_through_kills_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let mut clickhouse = OwnClickHouse::start(&dir.path().join("clickhouse"));
    let broker_dir = dir.path().join("broker");
    let mut broker = OwnBroker::start(&broker_dir, "sqlite://broker.db");
    let (ch_url, brokers) = (clickhouse.url(), broker.address());
    let p = Pipeline::start_with(|c| {
        c.clickhouse_url = ch_url;
        c.kafka_brokers = brokers;
    })
    .await;
    p.create_meter(json!({
        "slug": "units", "name": "Units", "eventType": "unit", "aggregation": "SUM",
        "valuePath": "n", "groupBy": [], "window": "MINUTE"
    }))
    .await;
    let tenant = p.tenant("acme-fiber");
    let mut rng = StdRng::seed_from_u64(5);
    let now = chrono::Utc::now();
    let values: Vec<i64> = (0..EVENTS).map(|_| rng.gen_range(1..1_000)).collect();
    let expected: Decimal = values.iter().map(|v| Decimal::from(*v)).sum();

    // The producer runs alongside the chaos, through the broker restart.
    let producer = dotmac_ingest::kafka::UsageProducer::new(
        &p.config.kafka_brokers,
        &p.config.kafka_security,
        &p.config.pipeline.events_topic,
    )
    .unwrap();
    let payloads: Vec<Vec<u8>> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let t = now - chrono::TimeDelta::seconds((i % 7200) as i64);
            event(&format!("c{i}"), "unit", &t.to_rfc3339(), json!({ "n": v }))
                .to_string()
                .into_bytes()
        })
        .collect();
    let produce = tokio::spawn({
        let tenant = tenant.clone();
        async move {
            let mut failed = 0usize;
            // Paced over about a minute, so the kills land mid-stream.
            for chunk in payloads.chunks(2000) {
                tokio::time::sleep(Duration::from_millis(600)).await;
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                // Unacknowledged events are sent again, as an ISP's producer
                // would; the aggregator's dedupe makes that safe.
                let mut pending = refs;
                while !pending.is_empty() {
                    let results = producer.send_all(&tenant, &pending).await;
                    let retry: Vec<&[u8]> = pending
                        .iter()
                        .zip(results)
                        .filter(|(_, r)| r.is_err())
                        .map(|(e, _)| *e)
                        .collect();
                    failed += retry.len();
                    pending = retry;
                    if !pending.is_empty() {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            failed
        }
    });

    let agg_log = dir.path().join("aggregator.log");
    let mut aggregator = spawn_aggregator(&p, &agg_log);
    let mut seen = 0;
    for kill in 1..=KILLS {
        // Kill in the middle of the work: once this aggregator has
        // committed something, at a random moment within 1.5 s.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let now_committed = p.usage.totals().await.map(|t| t.accepted).unwrap_or(seen);
            if now_committed > seen || Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1_500))).await;
        kill9(&mut aggregator);
        let committed = p.usage.totals().await.map(|t| t.accepted).unwrap_or(0);
        println!("chaos: SIGKILL {kill} of the aggregator with {committed} events committed");
        seen = committed;
        match kill {
            2 => {
                clickhouse.restart();
                println!("chaos: clickhouse restarted");
            }
            4 => {
                broker.restart();
                println!("chaos: broker restarted");
            }
            _ => {}
        }
        aggregator = spawn_aggregator(&p, &agg_log);
    }
    let resent = produce.await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(600);
    let totals = loop {
        let t = p.usage.totals().await.unwrap_or_default();
        if t.accepted >= EVENTS as u64 || Instant::now() > deadline {
            break t;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // Let a late double count show itself before the final reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let totals = p.usage.totals().await.unwrap_or(totals);
    let sum: Decimal = p.rollups("units").await.values().map(|s| s.value()).sum();
    let raw = p.usage.committed_raw_count().await.unwrap();
    kill9(&mut aggregator);
    println!(
        "chaos: {EVENTS} events produced ({resent} re-sent after unacknowledged sends), {KILLS} SIGKILLs, 1 clickhouse restart, 1 broker restart"
    );
    println!(
        "chaos: counted {} (lost {}, double-counted {}), duplicates dropped {}, dead-lettered {}, raw rows {raw}, sum {sum} (expected {expected})",
        totals.accepted,
        (EVENTS as u64).saturating_sub(totals.accepted),
        totals.accepted.saturating_sub(EVENTS as u64),
        totals.duplicates,
        totals.dead_lettered
    );
    if totals.accepted != EVENTS as u64 {
        for log in [&agg_log, &broker_dir.join("broker.log")] {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            eprintln!("--- {}:\n{}", log.display(), tail.join("\n"));
        }
    }
    assert_eq!(
        totals.accepted, EVENTS as u64,
        "zero lost, zero double-counted"
    );
    assert_eq!(totals.dead_lettered, 0);
    assert_eq!(raw, EVENTS as u64);
    assert_eq!(sum, expected);
}

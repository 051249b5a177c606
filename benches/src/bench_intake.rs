//! Benchmark of issue #3, HTTP intake: events/s accepted by `POST
//! /v1/events` (`dotmac serve`, batches of 100–1,000, answered after the
//! broker acknowledged), side by side in the same run with a raw rdkafka
//! producer sending the same events with the same settings (idempotent,
//! acks=all) and the same concurrency. Run with `deploy/local/bench-intake.sh`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use dotmac_benches::install::{drop_database, fresh_database, migrate, serve, serve_env};
use dotmac_benches::proc::rss_mib;
use dotmac_benches::workload::event;
use dotmac_ingest::kafka::events_producer_config;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde_json::json;

#[derive(Parser)]
struct Args {
    /// The release `dotmac` binary.
    #[arg(long)]
    dotmac: PathBuf,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Events per request (and per producer round on the baseline side).
    #[arg(long, default_value_t = 500)]
    batch: usize,
    /// Concurrent clients on each side.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds each side is measured, after a warm-up of 2 s.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_admin_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
}

/// Runs `round` (which sends `batch` events) from `concurrency` tasks for
/// `seconds` after a 2 s warm-up; returns events/s.
async fn drive<F, Fut>(
    concurrency: usize,
    seconds: u64,
    batch: usize,
    round: F,
) -> anyhow::Result<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let round = Arc::new(round);
    let sent = Arc::new(AtomicU64::new(0));
    let warm_until = Instant::now() + Duration::from_secs(2);
    let end = warm_until + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (round, sent) = (round.clone(), sent.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = worker;
            while Instant::now() < end {
                round(i).await?;
                if Instant::now() > warm_until {
                    sent.fetch_add(batch as u64, Ordering::Relaxed);
                }
                i += concurrency;
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(sent.load(Ordering::Relaxed) as f64 / seconds as f64)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !(100..=1000).contains(&args.batch) {
        bail!("--batch: must be 100 to 1000 (the issue's range)");
    }
    let run = uuid::Uuid::now_v7().simple().to_string();
    let db_name = format!("dotmac_bench_{}", std::process::id());
    let (owner_url, app_url) = fresh_database(&args.pg_admin_url, &db_name).await?;
    let topic = format!("bench_{run}.usage.events");
    let ch_db = format!("bench_{run}");
    let mut env = serve_env(&app_url, &args.redis_url);
    env.extend([
        ("DOTMAC_KAFKA_BROKERS", args.brokers.as_str()),
        ("DOTMAC_PIPELINE__EVENTS_TOPIC", topic.as_str()),
        ("DOTMAC_PIPELINE__DEAD_LETTER_TOPIC", "bench.dead-letter"),
        ("DOTMAC_CLICKHOUSE_DATABASE", ch_db.as_str()),
    ]);
    migrate(&args.dotmac, &owner_url, &env)?;
    let (server, base, token) = serve(&args.dotmac, &env).await?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    let gql = |query: String| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            let answer: serde_json::Value = http
                .post(format!("{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": query }))
                .send()
                .await?
                .json()
                .await?;
            if answer["errors"].is_array() {
                bail!("{answer}");
            }
            anyhow::Ok(answer["data"].clone())
        }
    };
    let tenant = gql("mutation { createTenant(input: { name: \"Bench ISP\" }) { id } }".into())
        .await?["createTenant"]["id"]
        .as_str()
        .context("tenant id")?
        .to_owned();
    for m in ["provisionTenant", "activateTenant"] {
        gql(format!(
            "mutation {{ {m}(id: \"{tenant}\", reason: \"bench\") {{ state }} }}"
        ))
        .await?;
    }
    let key = gql(format!("mutation {{ createApiKey(tenantId: \"{tenant}\", scopes: [USAGE_WRITE], name: \"bench\") {{ secret }} }}"))
        .await?["createApiKey"]["secret"]
        .as_str()
        .context("api key")?
        .to_owned();

    // A pool of distinct bodies, reused round-robin on both sides.
    let pool: Arc<Vec<Vec<serde_json::Value>>> = Arc::new(
        (0..64 * args.batch)
            .map(|i| event("evt", i))
            .collect::<Vec<_>>()
            .chunks(args.batch)
            .map(<[_]>::to_vec)
            .collect(),
    );
    let bodies: Arc<Vec<String>> = Arc::new(
        pool.iter()
            .map(|b| serde_json::Value::Array(b.clone()).to_string())
            .collect(),
    );
    let raw: Arc<Vec<Vec<Vec<u8>>>> = Arc::new(
        pool.iter()
            .map(|b| b.iter().map(|e| e.to_string().into_bytes()).collect())
            .collect(),
    );

    // Sanity: one request is accepted whole.
    let probe: serde_json::Value = http
        .post(format!("{base}/v1/events"))
        .bearer_auth(&key)
        .header("content-type", "application/cloudevents-batch+json")
        .body(bodies[0].clone())
        .send()
        .await?
        .json()
        .await?;
    if probe["accepted"] != args.batch {
        bail!("unexpected intake answer: {probe}");
    }

    let producer: FutureProducer = events_producer_config(
        &args.brokers,
        &dotmac_ingest::kafka::KafkaSecurity::default(),
    )
    .set("linger.ms", "5")
    .set("batch.num.messages", "10000")
    .create()?;
    let baseline = {
        let (producer, raw, topic, tenant) =
            (producer.clone(), raw.clone(), topic.clone(), tenant.clone());
        drive(args.concurrency, args.seconds, args.batch, move |i| {
            let (producer, raw, topic, tenant) =
                (producer.clone(), raw.clone(), topic.clone(), tenant.clone());
            async move {
                let events = &raw[i % raw.len()];
                let sends = events.iter().map(|e| {
                    producer.send(
                        FutureRecord::<str, [u8]>::to(&topic)
                            .key(tenant.as_str())
                            .payload(e.as_slice()),
                        Timeout::After(Duration::from_secs(30)),
                    )
                });
                for r in futures::future::join_all(sends).await {
                    r.map_err(|(e, _)| e)?;
                }
                anyhow::Ok(())
            }
        })
        .await?
    };

    let mut peak = 0.0f64;
    let intake = {
        let (http, bodies, base, key) = (http.clone(), bodies.clone(), base.clone(), key.clone());
        let batch = args.batch;
        drive(args.concurrency, args.seconds, args.batch, move |i| {
            let (http, bodies, base, key) =
                (http.clone(), bodies.clone(), base.clone(), key.clone());
            async move {
                let answer: serde_json::Value = http
                    .post(format!("{base}/v1/events"))
                    .bearer_auth(&key)
                    .header("content-type", "application/cloudevents-batch+json")
                    .body(bodies[i % bodies.len()].clone())
                    .send()
                    .await?
                    .json()
                    .await?;
                if answer["accepted"] != batch {
                    bail!(
                        "intake did not accept the whole batch: {}",
                        answer["failed"]
                    );
                }
                anyhow::Ok(())
            }
        })
        .await?
    };
    peak = peak.max(rss_mib(server.0.id()).0);

    println!(
        "HTTP intake: batches of {}, concurrency {}, {} s each side",
        args.batch, args.concurrency, args.seconds
    );
    println!("  raw rdkafka producer (baseline): {baseline:>10.0} events/s");
    println!("  POST /v1/events (dotmac serve):  {intake:>10.0} events/s");
    println!(
        "  ratio intake / raw:              {:>10.2} (goal >= 0.5; rate goal >= 100000/s)",
        intake / baseline
    );
    println!("  dotmac serve peak RSS:           {peak:>10.1} MiB");
    drop(server);
    drop_database(&args.pg_admin_url, &db_name).await?;
    Ok(())
}

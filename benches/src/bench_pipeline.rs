//! Benchmarks of issue #3 that need the broker and ClickHouse:
//!
//! - end to end: events/s from a Kafka backlog to committed rollups, against
//!   a raw rdkafka consumer reading the same topic and doing nothing (the
//!   broker-bound limit), in the same run; the aggregator's peak RSS;
//! - latency: event-to-queryable p50/p99 under a steady producer;
//! - outage: the aggregator's RSS through a ClickHouse outage with the
//!   producer still sending (flat: bounded by `max_pending_records`), and
//!   the totals exact after ClickHouse returns.
//!
//! The aggregator runs as a child process (this binary, `aggregate-child`)
//! with a fixed catalog, so its RSS is its own. ClickHouse is a server of
//! the benchmark's own, so the outage touches nothing else.
//! Run with `deploy/local/bench-pipeline.sh`.

/// The allocator `dotmac` itself runs with (api/src/main.rs), so the
/// aggregator measured here allocates as it does in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use dotmac_aggregator::catalog::StaticCatalog;
use dotmac_aggregator::clickhouse::ClickHouse;
use dotmac_aggregator::store::UsageStore;
use dotmac_aggregator::testkit::OwnClickHouse;
use dotmac_aggregator::{self as aggregator, AggregatorConfig, AggregatorStats};
use dotmac_benches::proc::rss_mib;
use dotmac_benches::workload::{catalog, event, tenant};
use dotmac_ingest::kafka::{client_config, create_topics, events_producer_config, Topics};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Option<Mode>,
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    /// Events in the backlog of the end-to-end run.
    #[arg(long, default_value_t = 300_000)]
    events: usize,
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Events/s of the steady producer (latency and outage phases).
    #[arg(long, default_value_t = 5_000)]
    rate: usize,
    /// Seconds of the latency phase.
    #[arg(long, default_value_t = 15)]
    latency_secs: u64,
    /// Seconds ClickHouse is down in the outage phase (0 skips it).
    #[arg(long, default_value_t = 60)]
    outage_secs: u64,
    /// The aggregator's bound on records held unflushed.
    #[arg(long, default_value_t = 100_000)]
    max_pending: usize,
}

#[derive(Subcommand)]
enum Mode {
    /// The aggregator under measurement (started by the benchmark itself).
    AggregateChild {
        #[arg(long)]
        brokers: String,
        #[arg(long)]
        topic: String,
        #[arg(long)]
        group: String,
        #[arg(long)]
        clickhouse: String,
        #[arg(long)]
        database: String,
        #[arg(long)]
        max_pending: usize,
    },
}

fn payload(prefix: &str, i: usize) -> Vec<u8> {
    event(prefix, i).to_string().into_bytes()
}

async fn aggregate_child(
    brokers: String,
    topic: String,
    group: String,
    clickhouse: String,
    database: String,
    max_pending: usize,
) -> anyhow::Result<()> {
    let mut config = AggregatorConfig::new(&brokers);
    config.group_id = group;
    config.topics.events = topic.clone();
    config.topics.dead_letter = format!("{topic}.dead");
    config.max_pending_records = max_pending;
    let store = UsageStore::new(ClickHouse::new(&clickhouse, &database));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        let _ = stop.send(true);
    });
    let stats = Arc::new(AggregatorStats::default());
    aggregator::run(
        config,
        store,
        Arc::new(StaticCatalog(catalog())),
        stats,
        stopped,
        None,
    )
    .await?;
    Ok(())
}

struct Producer {
    producer: FutureProducer,
    topic: String,
}

impl Producer {
    async fn send(&self, prefix: &str, range: std::ops::Range<usize>) -> anyhow::Result<()> {
        let indices: Vec<usize> = range.collect();
        for chunk in indices.chunks(10_000) {
            let payloads: Vec<(String, Vec<u8>)> = chunk
                .iter()
                .map(|i| (tenant(*i), payload(prefix, *i)))
                .collect();
            let sends = payloads.iter().map(|(k, p)| {
                self.producer.send(
                    FutureRecord::<str, [u8]>::to(&self.topic)
                        .key(k.as_str())
                        .payload(p.as_slice()),
                    Timeout::After(Duration::from_secs(60)),
                )
            });
            for r in futures::future::join_all(sends).await {
                r.map_err(|(e, _)| e).context("producing")?;
            }
        }
        Ok(())
    }

    /// `rate` events/s for `secs` seconds, in 100 ms ticks; returns how many.
    async fn steady(
        &self,
        prefix: &str,
        start: usize,
        rate: usize,
        secs: u64,
    ) -> anyhow::Result<usize> {
        let per_tick = (rate / 10).max(1);
        let ticks = secs * 10;
        let mut next = start;
        let mut interval = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..ticks {
            interval.tick().await;
            self.send(prefix, next..next + per_tick).await?;
            next += per_tick;
        }
        Ok(next - start)
    }
}

fn raw_consume(brokers: &str, topic: &str, expected: usize) -> anyhow::Result<f64> {
    let consumer: BaseConsumer =
        client_config(brokers, &dotmac_ingest::kafka::KafkaSecurity::default())
            .set("group.id", format!("raw-{}", uuid::Uuid::now_v7().simple()))
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("max.poll.interval.ms", "7000")
            .create()?;
    consumer.subscribe(&[topic])?;
    let started = Instant::now();
    let mut seen = 0usize;
    while seen < expected {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            m?;
            seen += 1;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("raw consumer read only {seen} of {expected}");
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

async fn wait_committed(
    store: &UsageStore,
    events: u64,
    child: &Child,
    peak: &mut f64,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    loop {
        *peak = peak.max(rss_mib(child.id()).0);
        let t = store.totals().await.unwrap_or_default();
        if t.events >= events {
            return Ok(started.elapsed().as_secs_f64());
        }
        if started.elapsed() > Duration::from_secs(900) {
            bail!("only {} of {events} committed", t.events);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(Mode::AggregateChild {
        brokers,
        topic,
        group,
        clickhouse,
        database,
        max_pending,
    }) = args.command
    {
        return aggregate_child(brokers, topic, group, clickhouse, database, max_pending).await;
    }
    let dir = tempfile::tempdir()?;
    let mut ch = OwnClickHouse::start(&dir.path().join("clickhouse"));
    let run = uuid::Uuid::now_v7().simple().to_string();
    let topic = format!("bench_{run}.usage.events");
    let database = format!("bench_{run}");
    let store = UsageStore::new(ClickHouse::new(&ch.url(), &database));
    store.migrate().await?;
    let topics = Topics {
        events: topic.clone(),
        dead_letter: format!("{topic}.dead"),
        partitions: args.partitions,
    };
    create_topics(
        &args.brokers,
        &dotmac_ingest::kafka::KafkaSecurity::default(),
        &topics,
    )
    .await?;
    let producer = Producer {
        producer: events_producer_config(
            &args.brokers,
            &dotmac_ingest::kafka::KafkaSecurity::default(),
        )
        .set("linger.ms", "5")
        .set("batch.num.messages", "10000")
        .create()?,
        topic: topic.clone(),
    };

    println!(
        "end to end: {} events in the backlog, {} partitions",
        args.events, args.partitions
    );
    let started = Instant::now();
    producer.send("e2e", 0..args.events).await?;
    println!("  produced in {:.1} s", started.elapsed().as_secs_f64());

    let raw_secs = tokio::task::spawn_blocking({
        let (b, t, n) = (args.brokers.clone(), topic.clone(), args.events);
        move || raw_consume(&b, &t, n)
    })
    .await??;
    let raw_rate = args.events as f64 / raw_secs;

    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args([
            "aggregate-child",
            "--brokers",
            &args.brokers,
            "--topic",
            &topic,
            "--group",
            &format!("agg-{run}"),
            "--clickhouse",
            &ch.url(),
            "--database",
            &database,
            "--max-pending",
            &args.max_pending.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let mut peak = 0.0;
    let agg_secs = wait_committed(&store, args.events as u64, &child, &mut peak).await?;
    let agg_rate = args.events as f64 / agg_secs;
    println!("  raw rdkafka consumer (baseline): {raw_rate:>10.0} events/s");
    println!("  aggregator to committed rollups: {agg_rate:>10.0} events/s");
    println!(
        "  ratio aggregator / raw:          {:>10.2}",
        agg_rate / raw_rate
    );
    println!("  aggregator peak RSS:             {peak:>10.1} MiB");

    println!(
        "latency: {} events/s for {} s",
        args.rate, args.latency_secs
    );
    let mut produced = args.events;
    let n = producer
        .steady("lat", 0, args.rate, args.latency_secs)
        .await?;
    produced += n;
    wait_committed(&store, produced as u64, &child, &mut peak).await?;
    let (count, p50, p99, max) = store.latency_ms("lat-").await?;
    println!("  event to queryable over {count} events: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms");

    if args.outage_secs > 0 {
        println!(
            "outage: clickhouse down {} s, producer at {} events/s",
            args.outage_secs, args.rate
        );
        let (_, before) = rss_mib(child.id());
        ch.stop();
        let sampler = {
            let pid = child.id();
            let secs = args.outage_secs;
            tokio::spawn(async move {
                let mut samples = Vec::new();
                for _ in 0..secs {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    samples.push(rss_mib(pid).1);
                }
                samples
            })
        };
        let n = producer
            .steady("out", 0, args.rate, args.outage_secs)
            .await?;
        produced += n;
        let samples = sampler.await?;
        ch.restart();
        let catch_up = wait_committed(&store, produced as u64, &child, &mut peak).await?;
        let third = samples.len() / 3;
        let at = |i: usize| samples.get(i).copied().unwrap_or_default();
        println!(
            "  RSS before {before:.1} MiB; during the outage at 1/3 {:.1}, 2/3 {:.1}, end {:.1} MiB (max {:.1})",
            at(third),
            at(2 * third),
            at(samples.len().saturating_sub(1)),
            samples.iter().copied().fold(0.0, f64::max)
        );
        println!("  caught up {catch_up:.1} s after clickhouse returned");
    }
    let totals = store.totals().await?;
    println!(
        "totals: {} records, {} counted, {} duplicates, {} dead-lettered (produced {produced})",
        totals.events, totals.accepted, totals.duplicates, totals.dead_lettered
    );
    println!(
        "aggregator peak RSS over the whole run: {:.1} MiB",
        peak.max(rss_mib(child.id()).0)
    );
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    if totals.accepted != produced as u64 {
        bail!("counted {} of {produced}", totals.accepted);
    }
    store.clickhouse().drop_database().await.ok();
    Ok(())
}

//! Benchmark of issue #13.7, compaction: a year of daily rollup windows for
//! a few tenants, written by F flushes (every flush adding a part to every
//! window), read as the close reads a tenant's total (`tenant_totals` over
//! the year) before and after `compact_closed`, for several F side by side
//! in one run. Before compaction the read grows with F; after, it should
//! not: the report's last lines are each read time divided by the read
//! time at the smallest F. Every read after compaction is checked equal to
//! the one before. Run with `deploy/local/bench-compaction.sh`.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use dotmac_aggregator::clickhouse::ClickHouse;
use dotmac_aggregator::compaction::compact_closed;
use dotmac_aggregator::store::UsageStore;

#[derive(Parser)]
struct Args {
    /// Numbers of flushes to compare, comma-separated; the first is the
    /// baseline.
    #[arg(long, default_value = "10,100,1000")]
    flushes: String,
    #[arg(long, default_value_t = 5)]
    tenants: usize,
    #[arg(long, default_value_t = 365)]
    days: usize,
    /// Reads per measurement; the best is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
}

/// 1 January 2025: the year read.
const YEAR_START: i64 = 1_735_689_600;

struct Measured {
    flushes: usize,
    parts: usize,
    before: Duration,
    compaction: Duration,
    after: Duration,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let flushes: Vec<usize> = args
        .flushes
        .split(',')
        .map(|f| {
            f.trim()
                .parse()
                .context("--flushes: numbers, comma-separated")
        })
        .collect::<anyhow::Result<_>>()?;
    if flushes.is_empty() || args.tenants == 0 || args.days == 0 || args.rounds == 0 {
        bail!("--flushes, --tenants, --days and --rounds must be positive");
    }
    let mut results = Vec::new();
    for &f in &flushes {
        results.push(measure(&args, f).await?);
    }
    println!("flushes\tparts\tread before (ms)\tcompaction (ms)\tread after (ms)");
    for m in &results {
        println!(
            "{}\t{}\t{:.1}\t{:.0}\t{:.1}",
            m.flushes,
            m.parts,
            ms(m.before),
            ms(m.compaction),
            ms(m.after)
        );
    }
    let base = &results[0];
    for m in &results[1..] {
        println!(
            "{} flushes vs {}: read before {:.2}x, read after {:.2}x",
            m.flushes,
            base.flushes,
            ms(m.before) / ms(base.before),
            ms(m.after) / ms(base.after)
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(args: &Args, flushes: usize) -> anyhow::Result<Measured> {
    let database = format!("bench_compaction_{}", uuid::Uuid::now_v7().simple());
    let store = UsageStore::new(ClickHouse::new(&args.clickhouse_url, &database));
    store.migrate().await?;
    let per_flush = args.tenants * args.days;
    let parts = flushes * per_flush;
    let ch = store.clickhouse();
    // Flush k writes one part (value 1.5) for every tenant and day, under
    // write id `w<k>`, committed by its batch row.
    ch.execute(&format!(
        "INSERT INTO usage_rollup_parts \
         SELECT concat('ten_', toString(intDiv(number % {per_flush}, {days}))) AS tenant, \
                'gb' AS meter, {YEAR_START} + (number % {days}) * 86400 AS window_start, \
                '[]' AS group_key, toInt32(0) AS partition, concat('w', toString(intDiv(number, {per_flush}))) AS write_id, \
                'SUM' AS aggregation, '1.5' AS value, toUInt64(0) AS count, emptyArrayString() AS uniques, \
                toInt64(0) AS latest_time_us, '' AS latest_id \
         FROM system.numbers LIMIT {parts}",
        days = args.days
    ))
    .await?;
    ch.execute(&format!(
        "INSERT INTO usage_batches (partition, first_offset, last_offset, write_id, written_at_us, \
         events, accepted, duplicates, dead_lettered, epoch) \
         SELECT toInt32(0), toInt64(number), toInt64(number), concat('w', toString(number)), toInt64(0), \
         toUInt32(0), toUInt32(0), toUInt32(0), toUInt32(0), toUInt64(0) FROM system.numbers LIMIT {flushes}"
    ))
    .await?;
    let to = YEAR_START + args.days as i64 * 86_400;
    let read = || store.tenant_totals("gb", YEAR_START, to);
    let expected = read().await?;
    if expected.totals.len() != args.tenants {
        bail!(
            "{} tenants read, {} written",
            expected.totals.len(),
            args.tenants
        );
    }
    let before = best_of(args.rounds, || async {
        let t = Instant::now();
        read().await?;
        Ok(t.elapsed())
    })
    .await?;
    // Long after the year: every bucket is closed.
    let now: DateTime<Utc> =
        DateTime::from_timestamp(to, 0).unwrap_or_default() + TimeDelta::days(60);
    let started = Instant::now();
    let done = compact_closed(&store, now, TimeDelta::days(32)).await?;
    let compaction = started.elapsed();
    if done.is_empty() {
        bail!("nothing was compacted");
    }
    if read().await? != expected {
        bail!("a read after compaction differs from the read before");
    }
    let after = best_of(args.rounds, || async {
        let t = Instant::now();
        read().await?;
        Ok(t.elapsed())
    })
    .await?;
    ch.drop_database().await?;
    Ok(Measured {
        flushes,
        parts,
        before,
        compaction,
        after,
    })
}

async fn best_of<F, Fut>(rounds: usize, mut f: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        best = best.min(f().await?);
    }
    Ok(best)
}

//! Benchmark of issue #3, fold: in-process decode + fold of usage events on
//! one core (the aggregator's per-record work: decode, tenant check, dedupe
//! key, meter contributions, raw row), side by side with the floor of any
//! JSON pipeline, `serde_json` parsing the same bytes into a `Value`.
//! Also states the dedupe state's memory per million distinct event ids.
//! Run with `deploy/local/bench-fold.sh`.

/// The allocator `dotmac` itself runs with (api/src/main.rs), so the
/// aggregator measured here allocates as it does in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use clap::Parser;
use dotmac_aggregator::fold::{PartitionBatch, Record, TimeLimits};
use dotmac_aggregator::DedupeSet;
use dotmac_benches::workload::{catalog, event, tenant};
use dotmac_ingest::dedupe::DedupeKey;

#[derive(Parser)]
struct Args {
    /// Events per round.
    #[arg(long, default_value_t = 200_000)]
    events: usize,
    /// Rounds of each side, interleaved; the best round of each is reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Events per batch (the aggregator folds one batch per flush).
    #[arg(long, default_value_t = 20_000)]
    batch: usize,
}

fn records(n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            partition: 0,
            offset: i as i64,
            key: Some(tenant(i).into_bytes()),
            payload: Some(event("evt", i).to_string().into_bytes()),
            received_at_us: 0,
        })
        .collect()
}

fn main() {
    let args = Args::parse();
    let recs = records(args.events);
    let bytes: usize = recs
        .iter()
        .map(|r| r.payload.as_ref().map_or(0, Vec::len))
        .sum();
    let catalog = catalog();
    let limits = TimeLimits::new(Utc::now(), TimeDelta::days(32));
    let mut best_fold = f64::MAX;
    let mut best_parse = f64::MAX;
    for _ in 0..args.rounds {
        let started = Instant::now();
        let dedupe = DedupeSet::default();
        let mut accepted = 0u32;
        // One batch reused flush after flush, as the aggregator does.
        let mut batch = PartitionBatch::with_capacity(0, args.batch);
        for chunk in recs.chunks(args.batch) {
            batch.reset(0);
            for r in chunk {
                batch.add(r, &catalog, &dedupe, &limits);
            }
            accepted += batch.accepted;
            black_box(&batch);
        }
        assert_eq!(accepted as usize, recs.len(), "every event folds");
        best_fold = best_fold.min(started.elapsed().as_secs_f64());

        let started = Instant::now();
        for r in &recs {
            let v: serde_json::Value =
                serde_json::from_slice(r.payload.as_deref().unwrap_or_default()).unwrap();
            black_box(v);
        }
        best_parse = best_parse.min(started.elapsed().as_secs_f64());
    }
    let fold_rate = recs.len() as f64 / best_fold;
    let parse_rate = recs.len() as f64 / best_parse;
    println!(
        "fold: {} events of {} bytes on average, best of {} rounds, one thread",
        recs.len(),
        bytes / recs.len().max(1),
        args.rounds
    );
    println!("  decode + fold:              {fold_rate:>12.0} events/s");
    println!("  baseline serde_json::Value: {parse_rate:>12.0} events/s");
    println!(
        "  ratio fold / baseline:      {:>12.2}",
        fold_rate / parse_rate
    );

    // Dedupe state: bytes per million distinct ids, measured on the table.
    let mut set = DedupeSet::default();
    for i in 0..1_000_000u32 {
        set.insert(DedupeKey::new("ten_x", "//isp/radius-7", &i.to_string()), 0);
    }
    println!(
        "dedupe state: {:.1} MiB per million distinct event ids ({} bytes per id incl. table slack)",
        set.approx_bytes() as f64 / (1024.0 * 1024.0),
        set.approx_bytes() / 1_000_000
    );
}

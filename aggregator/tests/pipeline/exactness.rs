//! Exactness: a generated stream with known totals per tenant / meter /
//! window, with duplicates, out-of-order and late events, through the real
//! broker and ClickHouse, equals the totals computed here independently,
//! for every aggregation. The aggregator restarts between the two phases,
//! so dedupe across restarts is part of what is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::json;

use dotmac_schema::usage::{Aggregation, Window};

use crate::harness::{event, Pipeline};

struct Sample {
    tenant: String,
    id: String,
    time: DateTime<Utc>,
    bytes: Decimal,
    v: Decimal,
    user: String,
    region: String,
}

impl Sample {
    fn payload(&self) -> Vec<u8> {
        // Numbers both as JSON numbers and as strings, as producers send them.
        let bytes = if self.id.len().is_multiple_of(2) {
            json!(self.bytes.to_string())
        } else {
            serde_json::from_str(&self.bytes.to_string()).unwrap()
        };
        event(
            &self.id,
            "sample",
            &self.time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            json!({ "bytes": bytes, "v": self.v.to_string(), "user": self.user, "region": self.region }),
        )
        .to_string()
        .into_bytes()
    }
}

fn window_start(t: DateTime<Utc>, secs: i64) -> i64 {
    let s = t.timestamp();
    s - s.rem_euclid(secs)
}

type Expected = BTreeMap<(String, i64, String), Decimal>;

/// The totals, computed without the fold or the merge law.
fn expected(samples: &[&Sample], meter: &str) -> Expected {
    let mut out: BTreeMap<(String, i64, String), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        let (window, group) = match meter {
            "m-sum" => (3600, s.region.clone()),
            "m-count" => (60, String::new()),
            "m-min" => (86_400, String::new()),
            "m-max" => (3600, String::new()),
            "m-unique" => (86_400, String::new()),
            "m-latest" => (3600, String::new()),
            _ => unreachable!(),
        };
        out.entry((s.tenant.clone(), window_start(s.time, window), group))
            .or_default()
            .push(s);
    }
    out.into_iter()
        .map(|(k, ss)| {
            let value = match meter {
                "m-sum" => ss.iter().map(|s| s.bytes).sum(),
                "m-count" => Decimal::from(ss.len()),
                "m-min" => ss.iter().map(|s| s.v).min().unwrap(),
                "m-max" => ss.iter().map(|s| s.v).max().unwrap(),
                "m-unique" => {
                    Decimal::from(ss.iter().map(|s| &s.user).collect::<BTreeSet<_>>().len())
                }
                "m-latest" => {
                    ss.iter()
                        .max_by_key(|s| (s.time, s.id.clone(), s.v))
                        .unwrap()
                        .v
                }
                _ => unreachable!(),
            };
            (k, value)
        })
        .collect()
}

async fn actual(p: &Pipeline, meter: &str) -> Expected {
    p.rollups(meter)
        .await
        .into_iter()
        .map(|(k, state)| {
            let group = k.group.first().map(|(_, v)| v.clone()).unwrap_or_default();
            ((k.tenant, k.window_start.timestamp(), group), state.value())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_independent_totals_for_every_aggregation() {
    let p = Pipeline::start().await;
    // Two active tenants, so totals are per tenant.
    let meters = [
        (
            "m-sum",
            Aggregation::Sum,
            Some("bytes"),
            vec!["region"],
            Window::Hour,
        ),
        ("m-count", Aggregation::Count, None, vec![], Window::Minute),
        ("m-min", Aggregation::Min, Some("v"), vec![], Window::Day),
        ("m-max", Aggregation::Max, Some("v"), vec![], Window::Hour),
        (
            "m-unique",
            Aggregation::UniqueCount,
            Some("user"),
            vec![],
            Window::Day,
        ),
        (
            "m-latest",
            Aggregation::Latest,
            Some("v"),
            vec![],
            Window::Hour,
        ),
    ];
    for (slug, aggregation, value_path, group_by, window) in &meters {
        p.meter(slug, "sample", *aggregation, *value_path, group_by, *window);
    }
    // The values run negative: every meter here is a correction feed's.
    p.allow_negative_values();

    let tenants = [p.tenant("acme-fiber"), p.tenant("comet-wireless")];
    let mut rng = StdRng::seed_from_u64(20261128);
    let base = p.clock.now() - TimeDelta::days(4);
    let samples: Vec<Sample> = (0..4000)
        .map(|i| Sample {
            tenant: tenants[i % 2].clone(),
            id: format!("e{i}"),
            time: base + TimeDelta::microseconds(rng.gen_range(0..3 * 86_400_000_000i64)),
            bytes: Decimal::new(rng.gen_range(0..100_000_000), rng.gen_range(0..4)),
            v: Decimal::new(rng.gen_range(-1_000_000..1_000_000), 2),
            user: format!("u{}", rng.gen_range(0..60)),
            region: ["north", "south", "east"][rng.gen_range(0..3)].into(),
        })
        .collect();
    let record = |s: &Sample| (Some(s.tenant.clone()), s.payload());

    // Phase 1: 70% of the events, shuffled (out of order), plus duplicates
    // among themselves and events of a suspended tenant.
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.shuffle(&mut rng);
    let (first, late) = order.split_at(2800);
    let mut phase1: Vec<_> = first.iter().map(|&i| record(&samples[i])).collect();
    let dup1: Vec<_> = first
        .iter()
        .take(300)
        .map(|&i| record(&samples[i]))
        .collect();
    phase1.extend(dup1);
    let suspended = p.tenant("bolt-broadband");
    phase1.extend((0..20).map(|i| {
        (
            Some(suspended.clone()),
            event(
                &format!("s{i}"),
                "sample",
                &base.to_rfc3339(),
                json!({"bytes": 1, "v": 1, "user": "x"}),
            )
            .to_string()
            .into_bytes(),
        )
    }));
    phase1.shuffle(&mut rng);
    let agg = p.spawn_aggregator();
    p.produce(&phase1).await;
    let t1 = p
        .wait_for_records(phase1.len() as u64, Duration::from_secs(120))
        .await;
    assert_eq!(
        (t1.accepted, t1.duplicates, t1.dead_lettered),
        (2800, 300, 20)
    );
    // The aggregator's own counters agree with the committed batch rows.
    let counted = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(counted(&agg.stats.accepted), 2800);
    assert_eq!(counted(&agg.stats.dead_lettered), 20);
    agg.stop().await;

    // Phase 2, after a restart: the late 30%, which land in windows already
    // written, and duplicates of events committed before the restart.
    let mut phase2: Vec<_> = late.iter().map(|&i| record(&samples[i])).collect();
    phase2.extend(
        first
            .iter()
            .skip(1000)
            .take(400)
            .map(|&i| record(&samples[i])),
    );
    phase2.shuffle(&mut rng);
    let agg = p.spawn_aggregator();
    p.produce(&phase2).await;
    let total_records = (phase1.len() + phase2.len()) as u64;
    let t2 = p
        .wait_for_records(total_records, Duration::from_secs(120))
        .await;
    agg.stop().await;
    assert_eq!(t2.events, total_records, "every record accounted for once");
    assert_eq!(
        (t2.accepted, t2.duplicates, t2.dead_lettered),
        (4000, 700, 20)
    );
    assert_eq!(p.usage.committed_raw_count().await.unwrap(), 4000);

    let all: Vec<&Sample> = samples.iter().collect();
    for (slug, ..) in &meters {
        let want = expected(&all, slug);
        let got = actual(&p, slug).await;
        assert_eq!(got.len(), want.len(), "{slug}: windows");
        for (k, v) in &want {
            assert_eq!(got.get(k), Some(v), "{slug} {k:?}");
        }
    }
    // The close's read, grouped per tenant in ClickHouse, equals merging
    // every window's rollup by the merge law, for every aggregation.
    for (slug, ..) in &meters {
        let read = p.usage.tenant_totals(slug, 0, i64::MAX).await.unwrap();
        assert!(read.failed.is_empty(), "{slug}: {:?}", read.failed);
        let per_tenant = read.totals;
        let mut merged: std::collections::BTreeMap<String, dotmac_schema::usage::RollupState> =
            std::collections::BTreeMap::new();
        for (k, state) in p.rollups(slug).await {
            match merged.get_mut(&k.tenant) {
                Some(t) => t.merge(state).unwrap(),
                None => {
                    merged.insert(k.tenant, state);
                }
            }
        }
        assert_eq!(per_tenant, merged, "{slug}: per-tenant totals");
    }
    // Sanity on the generator: SUM is exact to the last decimal place.
    let sum: Decimal = samples.iter().map(|s| s.bytes).sum();
    let got: Decimal = actual(&p, "m-sum").await.values().copied().sum();
    assert_eq!(got, sum);
    p.cleanup().await;
}

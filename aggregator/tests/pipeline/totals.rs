//! The close's read (`UsageStore::meter_totals`, summed in ClickHouse)
//! against the merge law applied here, on real ClickHouse: every
//! aggregation, values ClickHouse's decimals cannot hold exactly, sums that
//! could overflow them, and parts of a write that never committed.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use dotmac_aggregator::clickhouse::ClickHouse;
use dotmac_aggregator::rows::{BatchRow, RollupPartRow};
use dotmac_aggregator::store::UsageStore;
use dotmac_schema::usage::{RollupKey, RollupState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;

use crate::harness::clickhouse_url;

const DAY: i64 = 86_400;
/// 2026-10-01 in unix seconds.
const OCTOBER: i64 = 1_790_812_800;

fn batch(write_id: &str) -> BatchRow {
    BatchRow {
        partition: 0,
        first_offset: 0,
        last_offset: 0,
        write_id: write_id.into(),
        written_at_us: 0,
        events: 0,
        accepted: 0,
        duplicates: 0,
        dead_lettered: 0,
        epoch: 0,
    }
}

/// A random part of `meter`'s aggregation; SUM values sometimes beyond
/// what `Decimal128(18)` holds (19 fraction digits, 22 integer digits) or
/// big enough that 10 of them could overflow it.
fn state(rng: &mut StdRng, meter: &str, t: usize, i: i64) -> RollupState {
    let decimal =
        |rng: &mut StdRng| Decimal::new(rng.gen_range(-1_000_000..1_000_000), rng.gen_range(0..5));
    match meter {
        "m-sum" => RollupState::Sum(decimal(rng)),
        // One kind per tenant: a sum of both would exceed Decimal's 28 digits.
        "m-sum-wide" => RollupState::Sum(match t % 3 {
            0 => Decimal::new(rng.gen_range(1..1_000_000_000), 19),
            1 => Decimal::from_i128_with_scale(rng.gen_range(1..10) * 10i128.pow(21), 0),
            _ => decimal(rng),
        }),
        "m-sum-big" => RollupState::Sum(Decimal::from_i128_with_scale(
            9 * 10i128.pow(18) + i128::from(rng.gen_range(0..1000)),
            0,
        )),
        "m-count" => RollupState::Count(rng.gen_range(0..10_000)),
        "m-min" => RollupState::Min(decimal(rng)),
        "m-max" => RollupState::Max(decimal(rng)),
        "m-unique" => RollupState::Unique(
            (0..rng.gen_range(1..4))
                .map(|_| format!("u{}", rng.gen_range(0..20)))
                .collect(),
        ),
        "m-latest" => RollupState::Latest {
            time: DateTime::<Utc>::from_timestamp(OCTOBER + i * 60 + rng.gen_range(0..60), 0)
                .unwrap(),
            id: format!("e{}", rng.gen_range(0..1000)),
            value: decimal(rng),
        },
        other => unreachable!("{other}"),
    }
}

#[tokio::test]
async fn meter_totals_equal_the_merge_law_for_every_aggregation() {
    let db = format!("totals_{}", uuid::Uuid::new_v4().simple());
    let store = UsageStore::new(ClickHouse::new(&clickhouse_url(), &db));
    store.migrate().await.unwrap();
    let meters = [
        "m-sum",
        "m-sum-wide",
        "m-sum-big",
        "m-count",
        "m-min",
        "m-max",
        "m-unique",
        "m-latest",
    ];
    let mut rng = StdRng::seed_from_u64(20261128);
    let mut parts = Vec::new();
    let mut uncommitted = Vec::new();
    let mut want: HashMap<(String, String), RollupState> = HashMap::new();
    for t in 0..12usize {
        let tenant = format!("ten_{t:032x}");
        for meter in meters {
            // Up to 10 parts a tenant: 10 parts of 19 integer digits are the
            // first count that could overflow 20 digits.
            for i in 0..rng.gen_range(1..=10i64) {
                let key = RollupKey {
                    tenant: tenant.clone(),
                    meter: meter.into(),
                    window_start: DateTime::<Utc>::from_timestamp(OCTOBER + (i % 28) * DAY, 0)
                        .unwrap(),
                    group: vec![("region".into(), format!("r{}", i % 3))],
                };
                let s = state(&mut rng, meter, t, i);
                parts.push(RollupPartRow::new(&key, &s, 0, "w-committed"));
                match want.get_mut(&(tenant.clone(), meter.to_owned())) {
                    Some(total) => total.merge(s).unwrap(),
                    None => {
                        want.insert((tenant.clone(), meter.to_owned()), s);
                    }
                }
                // A write that died before its batch row: never counted.
                uncommitted.push(RollupPartRow::new(
                    &key,
                    &state(&mut rng, meter, t, i),
                    0,
                    "w-lost",
                ));
            }
        }
        // Outside the range asked for: not counted either.
        let late = RollupKey {
            tenant: tenant.clone(),
            meter: "m-sum".into(),
            window_start: DateTime::<Utc>::from_timestamp(OCTOBER + 40 * DAY, 0).unwrap(),
            group: vec![],
        };
        parts.push(RollupPartRow::new(
            &late,
            &RollupState::Sum(Decimal::ONE),
            0,
            "w-committed",
        ));
    }
    store.write_flush(&[], &uncommitted, &[]).await.unwrap();
    store
        .write_flush(&[], &parts, &[batch("w-committed")])
        .await
        .unwrap();

    let listed: Vec<String> = meters.iter().map(|m| m.to_string()).collect();
    let got = store
        .meter_totals(&listed, OCTOBER, OCTOBER + 31 * DAY)
        .await
        .unwrap();
    // Summed in ClickHouse where exact; merged here where not (and for the
    // aggregations a sum cannot express).
    for meter in ["m-sum-wide", "m-unique", "m-latest"] {
        assert!(
            got.merged_here.contains(meter),
            "{meter}: {:?}",
            got.merged_here
        );
    }
    for meter in ["m-sum", "m-count", "m-min", "m-max"] {
        assert!(
            !got.merged_here.contains(meter),
            "{meter}: {:?}",
            got.merged_here
        );
    }
    let got = got.by_tenant_meter;
    assert_eq!(got.len(), want.len());
    for (key, state) in &want {
        assert_eq!(got.get(key), Some(state), "{key:?}");
    }
    // The same as the per-part merge the close used before, meter by meter.
    for meter in meters {
        let merged = store
            .tenant_totals(meter, OCTOBER, OCTOBER + 31 * DAY)
            .await
            .unwrap();
        assert!(merged.failed.is_empty(), "{meter}: {:?}", merged.failed);
        for (tenant, state) in merged.totals {
            assert_eq!(
                got.get(&(tenant, meter.to_owned())),
                Some(&state),
                "{meter}"
            );
        }
    }
    // A malformed value (ClickHouse would read "1.5" of it) fails the read
    // rather than bill a prefix.
    let key = RollupKey {
        tenant: "ten_bad".into(),
        meter: "m-bad".into(),
        window_start: DateTime::<Utc>::from_timestamp(OCTOBER, 0).unwrap(),
        group: vec![],
    };
    let mut bad = RollupPartRow::new(&key, &RollupState::Sum(Decimal::ONE), 0, "w-bad");
    bad.value = "1.5abc".into();
    store
        .write_flush(&[], &[bad], &[batch("w-bad")])
        .await
        .unwrap();
    // The malformed part fails its own tenant's total, not the read: a
    // good tenant of the same meter keeps its total.
    let good = RollupKey {
        tenant: "ten_good".into(),
        ..key.clone()
    };
    let part = RollupPartRow::new(&good, &RollupState::Sum(Decimal::TWO), 0, "w-good");
    store
        .write_flush(&[], &[part], &[batch("w-good")])
        .await
        .unwrap();
    let read = store
        .meter_totals(&["m-bad".to_owned()], OCTOBER, OCTOBER + 31 * DAY)
        .await
        .unwrap();
    let why = &read.failed[&("ten_bad".to_owned(), "m-bad".to_owned())];
    assert!(why.contains("1.5abc"), "{why}");
    assert_eq!(
        read.by_tenant_meter
            .get(&("ten_good".to_owned(), "m-bad".to_owned())),
        Some(&RollupState::Sum(Decimal::TWO))
    );
    assert!(!read
        .by_tenant_meter
        .contains_key(&("ten_bad".to_owned(), "m-bad".to_owned())));
    // A meter nobody used, and no meters at all.
    let none = store
        .meter_totals(&["m-none".to_owned()], OCTOBER, OCTOBER + 31 * DAY)
        .await
        .unwrap();
    assert!(none.by_tenant_meter.is_empty());
    assert!(store
        .meter_totals(&[], 0, i64::MAX)
        .await
        .unwrap()
        .by_tenant_meter
        .is_empty());
    store.clickhouse().drop_database().await.unwrap();
}

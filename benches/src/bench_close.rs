//! Benchmark of issue #4, period close: `dotmac bill close` for N tenants
//! (default 10,000) on a plan with a flat fee and five metered prices, from
//! ClickHouse rollups (a month of daily windows per tenant and meter), to
//! finalized invoices in Postgres; side by side in the same run with the
//! raw ClickHouse `GROUP BY tenant, meter` over the same rollups, which is
//! the floor of any close that reads them (and, for context, the same
//! GROUP BY summing exact decimals). Reports both times, their ratio
//! and the close's peak RSS, then checks every invoice is finalized and
//! numbered without a gap. Run with `deploy/local/bench-close.sh`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use dotmac_aggregator::clickhouse::ClickHouse;
use dotmac_aggregator::rows::BatchRow;
use dotmac_aggregator::store::UsageStore;
use dotmac_benches::install::{drop_database, fresh_database, migrate};
use dotmac_benches::proc::rss_mib;
use dotmac_schema::price::{ChargeModel, Price, Tier};
use rust_decimal::Decimal;
use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};

#[derive(Parser)]
struct Args {
    /// The release `dotmac` binary.
    #[arg(long)]
    dotmac: PathBuf,
    #[arg(long, default_value_t = 10_000)]
    tenants: usize,
    /// Daily rollup windows per tenant and meter.
    #[arg(long, default_value_t = 30)]
    days: usize,
    /// Rounds of the baseline query; the best is reported.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_admin_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    /// Keep the Postgres and ClickHouse databases afterwards, to inspect.
    #[arg(long)]
    keep: bool,
    /// The close's log level (`info` shows its phases' times on stderr).
    #[arg(long, default_value = "warn")]
    log: String,
}

const METERS: usize = 5;
/// October 2026 in unix seconds: the closed month.
const OCTOBER: i64 = 1_790_812_800;

fn tenant_id(i: usize) -> String {
    format!("ten_{i:032x}")
}

fn prices() -> Vec<Price> {
    let mut prices = vec![Price {
        meter: None,
        model: ChargeModel::Flat {
            amount: Decimal::from(99),
        },
        included_units: Decimal::ZERO,
        minimum: None,
    }];
    for m in 0..METERS {
        let model = if m % 2 == 0 {
            ChargeModel::PerUnit {
                unit_price: Decimal::new(15, 3),
            }
        } else {
            ChargeModel::Graduated {
                tiers: vec![
                    Tier {
                        up_to: Some(Decimal::from(5_000)),
                        unit_price: Decimal::new(2, 2),
                        flat_fee: Decimal::ZERO,
                    },
                    Tier {
                        up_to: None,
                        unit_price: Decimal::new(1, 2),
                        flat_fee: Decimal::from(5),
                    },
                ],
            }
        };
        prices.push(Price {
            meter: Some(format!("bench-meter-{m}")),
            model,
            included_units: Decimal::from(100),
            minimum: None,
        });
    }
    prices
}

/// Tenants, one plan and a subscription each, straight into Postgres.
async fn seed_postgres(owner_url: &str, tenants: usize) -> anyhow::Result<()> {
    let db = Database::connect(owner_url).await?;
    let now = "2026-09-15T00:00:00Z";
    db.execute_unprepared(&format!(
        "INSERT INTO plans (id, slug, version, name, currency, billing_interval, trial_days, prices, created_at) \
         VALUES ('pln_{:032x}', 'bench', 1, 'Bench', 'USD', 'MONTHLY', 0, '{}', '{now}')",
        1,
        serde_json::to_string(&prices())?
    ))
    .await?;
    for chunk in (0..tenants).collect::<Vec<_>>().chunks(1000) {
        let t: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('{}', 'Bench {i}', 'bench-{i}', 'active', 'small', '{now}', '{now}')",
                    tenant_id(*i)
                )
            })
            .collect();
        db.execute_unprepared(&format!(
            "INSERT INTO tenants (id, name, slug, state, tier, created_at, updated_at) VALUES {}",
            t.join(",")
        ))
        .await?;
        let s: Vec<String> = chunk
            .iter()
            .map(|i| {
                format!(
                    "('sub_{i:032x}', '{}', 'pln_{:032x}', 'active', '2026-10-01', '2026-10-01T00:00:00Z', false, '{now}', '{now}')",
                    tenant_id(*i),
                    1
                )
            })
            .collect();
        db.execute_unprepared(&format!(
            "INSERT INTO subscriptions (id, tenant_id, plan_id, state, anchor_date, covers_from, cancel_at_period_end, created_at, updated_at) VALUES {}",
            s.join(",")
        ))
        .await?;
    }
    Ok(())
}

/// A month of daily parts per tenant and meter, generated by ClickHouse
/// itself, committed under one batch row.
async fn seed_clickhouse(store: &UsageStore, tenants: usize, days: usize) -> anyhow::Result<u64> {
    store.migrate().await?;
    let per_tenant = METERS * days;
    let rows = (tenants * per_tenant) as u64;
    store
        .clickhouse()
        .execute(&format!(
            "INSERT INTO usage_rollup_parts \
             SELECT concat('ten_', substring(concat('00000000000000000000000000000000', lower(hex(intDiv(number, {per_tenant})))), \
                      length(concat('00000000000000000000000000000000', lower(hex(intDiv(number, {per_tenant}))))) - 31, 32)) AS tenant, \
                    concat('bench-meter-', toString(intDiv(number % {per_tenant}, {days}))) AS meter, \
                    {OCTOBER} + (number % {days}) * 86400 AS window_start, \
                    '[]' AS group_key, toInt32(0) AS partition, 'bench-write' AS write_id, 'SUM' AS aggregation, \
                    concat(toString(number % 997), '.', toString(number % 10)) AS value, toUInt64(0) AS count, \
                    emptyArrayString() AS uniques, toInt64(0) AS latest_time_us, '' AS latest_id \
             FROM system.numbers LIMIT {rows}"
        ))
        .await?;
    store
        .write_flush(
            &[],
            &[],
            &[BatchRow {
                partition: 0,
                first_offset: 0,
                last_offset: 0,
                write_id: "bench-write".into(),
                written_at_us: 0,
                events: 0,
                accepted: 0,
                duplicates: 0,
                dead_lettered: 0,
                epoch: 0,
            }],
        )
        .await?;
    Ok(rows)
}

/// The baseline's total: what a GROUP BY that need not be exact sums.
const FLOAT_SUM: &str = "sum(toFloat64(value))";
/// For context: the same GROUP BY summing exact decimals, as a bill must.
const EXACT_SUM: &str = "toString(sum(toDecimal128(value, 18)))";

/// The raw GROUP BY the close's reading is measured against: every
/// tenant's total per meter over the month's committed parts, read whole.
async fn raw_group_by(
    clickhouse_url: &str,
    database: &str,
    total: &str,
) -> anyhow::Result<(Duration, usize)> {
    let sql = format!(
        "SELECT tenant, meter, {total} FROM {database}.usage_rollup_parts \
         WHERE window_start >= {OCTOBER} AND window_start < {} \
         AND write_id IN (SELECT write_id FROM {database}.usage_batches) \
         GROUP BY tenant, meter FORMAT TabSeparated",
        OCTOBER + 31 * 86_400
    );
    let started = Instant::now();
    let body = reqwest::Client::new()
        .post(clickhouse_url)
        .body(sql)
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    Ok((started.elapsed(), body.lines().count()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let name = format!("bench_close_{}", uuid::Uuid::new_v4().simple());
    let (owner_url, app_url) = fresh_database(&args.pg_admin_url, &name).await?;
    let ch_env = [
        ("DOTMAC_CLICKHOUSE_URL", args.clickhouse_url.as_str()),
        ("DOTMAC_CLICKHOUSE_DATABASE", name.as_str()),
    ];
    let result = run(&args, &name, &owner_url, &app_url, &ch_env).await;
    if args.keep {
        println!("  kept Postgres and ClickHouse database {name}");
        return result;
    }
    let store = UsageStore::new(ClickHouse::new(&args.clickhouse_url, &name));
    store.clickhouse().drop_database().await.ok();
    drop_database(&args.pg_admin_url, &name).await.ok();
    result
}

async fn run(
    args: &Args,
    name: &str,
    owner_url: &str,
    app_url: &str,
    ch_env: &[(&str, &str)],
) -> anyhow::Result<()> {
    migrate(&args.dotmac, owner_url, &[])?;
    let started = Instant::now();
    seed_postgres(owner_url, args.tenants).await?;
    let store = UsageStore::new(ClickHouse::new(&args.clickhouse_url, name));
    let parts = seed_clickhouse(&store, args.tenants, args.days).await?;
    println!(
        "close: {} tenants x {METERS} meters, {parts} rollup parts (a month of daily windows), seeded in {:.1} s",
        args.tenants,
        started.elapsed().as_secs_f64()
    );

    let mut best = Duration::MAX;
    let mut best_exact = Duration::MAX;
    let mut groups = 0;
    for _ in 0..args.rounds {
        let (took, n) = raw_group_by(&args.clickhouse_url, name, FLOAT_SUM).await?;
        best = best.min(took);
        groups = n;
        let (took, _) = raw_group_by(&args.clickhouse_url, name, EXACT_SUM).await?;
        best_exact = best_exact.min(took);
    }
    if groups != args.tenants * METERS {
        bail!(
            "the baseline returned {groups} groups, not {}",
            args.tenants * METERS
        );
    }

    let close = |label: &str| -> anyhow::Result<(Duration, f64)> {
        let started = Instant::now();
        let mut child = Command::new(&args.dotmac)
            .args([
                "bill",
                "close",
                "--period",
                "2026-10",
                "--now",
                "2026-11-28T00:00:00Z",
            ])
            .env("DOTMAC_DATABASE_URL", app_url)
            .env("DOTMAC_REDIS_URL", &args.redis_url)
            .env(
                "DOTMAC_AUTH__JWT_SECRET",
                "bench-secret-bench-secret-bench-secret-0001",
            )
            .env("DOTMAC_LOG", &args.log)
            .envs(ch_env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(if args.log == "warn" {
                Stdio::null()
            } else {
                Stdio::inherit()
            })
            .spawn()
            .with_context(|| format!("starting the {label} close"))?;
        let pid = child.id();
        let mut peak: f64 = 0.0;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            peak = peak.max(rss_mib(pid).0);
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = started.elapsed();
        let mut out = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().context("stdout")?, &mut out)?;
        if !status.success() {
            bail!("the {label} close failed: {out}");
        }
        println!("  {label} close: {}", out.trim());
        Ok((took, peak))
    };
    let (first, peak) = close("first")?;
    let (again, _) = close("repeated")?;

    let db = Database::connect(owner_url).await?;
    let row = db
        .query_one(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n, count(DISTINCT number) AS d, \
             max(CAST(substring(number from 4) AS BIGINT)) AS m \
             FROM invoices WHERE status = 'finalized'",
        ))
        .await?
        .context("count")?;
    let (n, distinct, max): (i64, i64, i64) = (
        row.try_get("", "n")?,
        row.try_get("", "d")?,
        row.try_get("", "m")?,
    );
    if n as usize != args.tenants || distinct != n || max != n {
        bail!("expected {} finalized invoices numbered 1..{0} without a gap: {n} rows, {distinct} numbers, max {max}", args.tenants);
    }

    let ratio = first.as_secs_f64() / best.as_secs_f64();
    println!(
        "  raw ClickHouse GROUP BY (baseline): {:>8.2} s ({groups} groups, best of {})",
        best.as_secs_f64(),
        args.rounds
    );
    println!(
        "  same GROUP BY, exact decimal sums:  {:>8.2} s (context, not the baseline)",
        best_exact.as_secs_f64()
    );
    println!(
        "  dotmac bill close (first):          {:>8.2} s (goal < 10 s)",
        first.as_secs_f64()
    );
    println!("  ratio close / baseline:             {ratio:>8.2} (goal <= 3)");
    println!("  dotmac bill close peak RSS:         {peak:>8.1} MiB (goal < 1024)");
    println!(
        "  repeated close (changes nothing):   {:>8.2} s",
        again.as_secs_f64()
    );
    println!("  {n} invoices finalized, numbered 1..{n} without a gap");
    Ok(())
}

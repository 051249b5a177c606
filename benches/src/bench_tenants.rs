//! Benchmark of issue #2: `tenants(first: 50)` with nested reseller and
//! counts through `dotmac serve` on Postgres, side by side with a raw SQL loop
//! fetching the same rows in the same run; plus `dotmac dev` start-up time
//! and idle RSS. Run with `deploy/local/bench.sh`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use hdrhistogram::Histogram;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};
use serde_json::json;
use tokio::sync::Mutex;

use dotmac_benches::install::{
    drop_database, free_port, fresh_database, migrate, serve, serve_env, wait_http, Killed,
};
use dotmac_benches::proc::{cpu_secs, rss_mib};

#[derive(Parser)]
struct Args {
    /// The release `dotmac` binary.
    #[arg(long)]
    dotmac: PathBuf,
    /// Concurrent clients (same for both sides).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Seconds each side is measured, after a warm-up of 2 s.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Tenants seeded (the page is always 50).
    #[arg(long, default_value_t = 500)]
    tenants: u32,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/postgres")]
    pg_admin_url: String,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    /// Another GraphQL document to drive instead of the query (for
    /// finding where time goes; the figures of record use the default).
    #[arg(long)]
    query: Option<String>,
}

const QUERY: &str = "{ tenants(first: 50) { edges { node { id name slug state tier reseller { id name } userCount apiKeyCount } } } }";

async fn seed(owner: &DatabaseConnection, tenants: u32) -> anyhow::Result<()> {
    let sql = format!(
        "INSERT INTO resellers (id, name, tier, created_at)
           SELECT 'rsl_' || lpad(to_hex(g), 32, '0'), 'Reseller ' || g, 'gold', now() FROM generate_series(1, 20) g;
         INSERT INTO tenants (id, name, slug, state, tier, reseller_id, created_at, updated_at)
           SELECT 'ten_' || lpad(to_hex(g), 32, '0'), 'Tenant ' || g, 'tenant-' || g, 'active', 'small',
                  CASE WHEN g % 3 <> 0 THEN 'rsl_' || lpad(to_hex(g % 20 + 1), 32, '0') END, now(), now()
           FROM generate_series(1, {tenants}) g;
         INSERT INTO users (id, email, password_hash, role, tenant_id, created_at)
           SELECT 'usr_' || lpad(to_hex(g * 10 + k), 32, '0'), 'u' || g || '_' || k || '@bench.test', 'x',
                  'tenant_user', 'ten_' || lpad(to_hex(g), 32, '0'), now()
           FROM generate_series(1, {tenants}) g, generate_series(1, 3) k;
         INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, created_by, created_at)
           SELECT 'key_' || lpad(to_hex(g * 10 + k), 32, '0'), 'ten_' || lpad(to_hex(g), 32, '0'), 'k',
                  'dmk_' || lpad(to_hex(g * 10 + k), 12, '0'), 'h', 'usage:write', 'bench', now()
           FROM generate_series(1, {tenants}) g, generate_series(1, 2) k;
         ANALYZE;"
    );
    owner.execute_unprepared(&sql).await?;
    Ok(())
}

struct Outcome {
    requests: u64,
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
}

/// Runs `op` from `concurrency` tasks for `seconds` after a warm-up.
async fn drive<F, Fut>(concurrency: usize, seconds: u64, op: F) -> anyhow::Result<Outcome>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let hist = Arc::new(Mutex::new(Histogram::<u64>::new(3)?));
    let warm_until = Instant::now() + Duration::from_secs(2);
    let stop_at = warm_until + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (op, hist) = (op.clone(), hist.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = Histogram::<u64>::new(3).unwrap();
            loop {
                let t = Instant::now();
                if t >= stop_at {
                    break;
                }
                op().await?;
                if t >= warm_until {
                    local.record(t.elapsed().as_micros() as u64).unwrap();
                }
            }
            hist.lock().await.add(local).unwrap();
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    let h = hist.lock().await;
    Ok(Outcome {
        requests: h.len(),
        rps: h.len() as f64 / seconds as f64,
        p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
        p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
    })
}

/// The same rows the API returns, fetched the way a hand-written client
/// would: the page with its counts in one query, then the page's resellers.
async fn raw_sql_once(db: &DatabaseConnection) -> anyhow::Result<()> {
    let pg = DbBackend::Postgres;
    let tenants = db
        .query_all(Statement::from_string(
            pg,
            "SELECT id, name, slug, state, tier, reseller_id, \
               (SELECT count(*) FROM users u WHERE u.tenant_id = tenants.id) AS user_count, \
               (SELECT count(*) FROM api_keys k WHERE k.tenant_id = tenants.id AND k.revoked_at IS NULL) AS api_key_count \
             FROM tenants ORDER BY id LIMIT 51",
        ))
        .await?;
    let mut resellers: Vec<String> = tenants
        .iter()
        .filter_map(|r| {
            r.try_get::<Option<String>>("", "reseller_id")
                .ok()
                .flatten()
        })
        .map(|id| format!("'{id}'"))
        .collect();
    resellers.sort();
    resellers.dedup();
    if !resellers.is_empty() {
        db.query_all(Statement::from_string(
            pg,
            format!(
                "SELECT id, name, tier FROM resellers WHERE id IN ({})",
                resellers.join(",")
            ),
        ))
        .await?;
    }
    Ok(())
}

async fn dev_startup(dotmac: &PathBuf) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for run in ["first start (migrate + seed)", "restart (existing data)"] {
        let port = free_port();
        let started = Instant::now();
        let child = Command::new(dotmac)
            .args([
                "dev",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--data-dir",
            ])
            .arg(dir.path())
            .env("DOTMAC_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let child = Killed(child);
        wait_http(
            &format!("http://127.0.0.1:{port}/healthz"),
            Duration::from_secs(30),
        )
        .await?;
        let ready = started.elapsed();
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (_, idle) = rss_mib(child.0.id());
        println!(
            "dev {run}: serving after {:.0} ms (goal < 2000 ms); idle RSS {idle:.1} MiB (goal < 100 MiB)",
            ready.as_secs_f64() * 1000.0
        );
        drop(child);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    dev_startup(&args.dotmac).await?;

    let db_name = format!("dotmac_bench_{}", std::process::id());
    let (owner_url, app_url) = fresh_database(&args.pg_admin_url, &db_name).await?;
    migrate(&args.dotmac, &owner_url, &[])?;
    let mut opts = ConnectOptions::new(owner_url.clone());
    opts.max_connections(args.concurrency as u32)
        .sqlx_logging(false);
    let owner = Database::connect(opts).await?;
    seed(&owner, args.tenants).await?;

    let pool = args.concurrency.to_string();
    let mut env = serve_env(&app_url, &args.redis_url);
    env.push(("DOTMAC_DATABASE_POOL_SIZE", pool.as_str()));
    let (server, base, token) = serve(&args.dotmac, &env).await?;
    let url = format!("{base}/graphql");
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()?;
    // Sanity: the answer has the 50 tenants with their nested fields.
    let probe: serde_json::Value = http
        .post(&url)
        .bearer_auth(&token)
        .json(&json!({ "query": QUERY }))
        .send()
        .await?
        .json()
        .await?;
    let edges = probe["data"]["tenants"]["edges"]
        .as_array()
        .context("tenants answer")?;
    if edges.len() != 50 || edges[0]["node"]["userCount"] != 3 {
        bail!("unexpected answer: {probe}");
    }

    println!(
        "\ntenants(first: 50) with reseller + userCount + apiKeyCount; {} tenants; concurrency {}; {} s each",
        args.tenants, args.concurrency, args.seconds
    );
    let query = args.query.clone().unwrap_or_else(|| QUERY.to_owned());
    let body = Arc::new(json!({ "query": query }).to_string());
    let (h2, url2, token2) = (http.clone(), url.clone(), token.clone());
    let cpu_before = cpu_secs(server.0.id());
    let api = drive(args.concurrency, args.seconds, move || {
        let (h, u, t, b) = (h2.clone(), url2.clone(), token2.clone(), body.clone());
        async move {
            let r = h
                .post(u)
                .bearer_auth(t)
                .header("content-type", "application/json")
                .body((*b).clone())
                .send()
                .await?;
            if !r.status().is_success() {
                bail!("status {}", r.status());
            }
            r.bytes().await?;
            Ok(())
        }
    })
    .await?;
    let (peak, _) = rss_mib(server.0.id());
    let api_cpu_ms = (cpu_secs(server.0.id()) - cpu_before) * 1000.0 / api.requests.max(1) as f64;
    drop(server);

    let owner = Arc::new(owner);
    let raw = drive(args.concurrency, args.seconds, move || {
        let db = owner.clone();
        async move { raw_sql_once(&db).await }
    })
    .await?;

    println!(
        "{:<26} {:>10} {:>10} {:>10} {:>10}",
        "side", "requests", "req/s", "p50 ms", "p99 ms"
    );
    for (name, o) in [("API (dotmac serve)", &api), ("raw SQL baseline", &raw)] {
        println!(
            "{:<26} {:>10} {:>10.0} {:>10.2} {:>10.2}",
            name, o.requests, o.rps, o.p50_ms, o.p99_ms
        );
    }
    println!(
        "ratio API / raw SQL: {:.2} (goal >= 0.30); API p99 {:.2} ms (goal < 20 ms); API rate {:.0}/s (goal >= 5000/s)",
        api.rps / raw.rps,
        api.p99_ms,
        api.rps
    );
    println!("API process peak RSS under load: {peak:.1} MiB (goal < 150 MiB)");
    println!("API process CPU per request (incl. warm-up): {api_cpu_ms:.2} ms");
    drop_database(&args.pg_admin_url, &db_name).await?;
    Ok(())
}

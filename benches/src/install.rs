//! A throwaway install of `dotmac serve` for the benchmarks: a fresh
//! Postgres database migrated by its owner, a platform admin, the server on
//! a free port, and a signed-in token.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use sea_orm::{ConnectionTrait, Database};
use serde_json::json;

/// A child process killed when dropped.
pub struct Killed(pub Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `url` answers 2xx.
pub async fn wait_http(url: &str, deadline: Duration) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let client = reqwest::Client::new();
    while start.elapsed() < deadline {
        if let Ok(r) = client.get(url).send().await {
            if r.status().is_success() {
                return Ok(start.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    bail!("{url} did not answer within {deadline:?}")
}

pub const ADMIN_EMAIL: &str = "bench@bench.test";
pub const ADMIN_PASSWORD: &str = "bench-password-123";

/// What every benchmark's `dotmac serve` is started with; callers add their
/// own settings after these.
pub fn serve_env<'a>(app_url: &'a str, redis_url: &'a str) -> Vec<(&'static str, &'a str)> {
    vec![
        ("DOTMAC_DATABASE_URL", app_url),
        ("DOTMAC_REDIS_URL", redis_url),
        (
            "DOTMAC_AUTH__JWT_SECRET",
            "bench-secret-bench-secret-bench-secret-0001",
        ),
        ("DOTMAC_LOG", "warn"),
        // The benchmarks measure throughput, not the rate limits: every
        // request still pays the limiter's check (a Redis round trip), but
        // no bucket runs dry.
        ("DOTMAC_LIMITS__TENANT_PER_MINUTE", "100000000"),
        ("DOTMAC_LIMITS__TENANT_BURST", "100000000"),
        ("DOTMAC_LIMITS__PRINCIPAL_PER_MINUTE", "100000000"),
        ("DOTMAC_LIMITS__PRINCIPAL_BURST", "100000000"),
        ("DOTMAC_LIMITS__STAFF_PER_MINUTE", "100000000"),
        ("DOTMAC_LIMITS__STAFF_BURST", "100000000"),
    ]
}

/// Creates a database, the app role, and returns (owner URL, app URL).
pub async fn fresh_database(pg_admin_url: &str, name: &str) -> anyhow::Result<(String, String)> {
    let admin = Database::connect(pg_admin_url).await?;
    admin
        .execute_unprepared("DO $$ BEGIN CREATE ROLE dotmac_app LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$")
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await?;
    let base = pg_admin_url
        .rsplit_once('/')
        .map(|(b, _)| b.to_owned())
        .context("pg url")?;
    Ok((
        format!("{base}/{name}"),
        format!("postgres://dotmac_app@127.0.0.1:5432/{name}"),
    ))
}

/// Drops a database made by [`fresh_database`].
pub async fn drop_database(pg_admin_url: &str, name: &str) -> anyhow::Result<()> {
    let admin = Database::connect(pg_admin_url).await?;
    admin
        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await?;
    Ok(())
}

/// Runs `dotmac migrate` as the owner, with `env` (pipeline settings too).
pub fn migrate(dotmac: &Path, owner_url: &str, env: &[(&str, &str)]) -> anyhow::Result<()> {
    let status = Command::new(dotmac)
        .arg("migrate")
        .envs(env.iter().copied())
        .env("DOTMAC_DATABASE_URL", owner_url)
        .env("DOTMAC_LOG", "warn")
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("dotmac migrate failed");
    }
    Ok(())
}

/// A platform admin, then `dotmac serve` on a free port; returns the server,
/// its base URL and an access token.
pub async fn serve(
    dotmac: &Path,
    env: &[(&str, &str)],
) -> anyhow::Result<(Killed, String, String)> {
    let status = Command::new(dotmac)
        .args([
            "admin",
            "create-user",
            "--email",
            ADMIN_EMAIL,
            "--role",
            "platform_admin",
        ])
        .envs(env.iter().copied())
        .env("DOTMAC_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("dotmac admin create-user failed");
    }
    let port = free_port();
    let server = Killed(
        Command::new(dotmac)
            .arg("serve")
            .envs(env.iter().copied())
            .env("DOTMAC_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .spawn()?,
    );
    let base = format!("http://127.0.0.1:{port}");
    wait_http(&format!("{base}/readyz"), Duration::from_secs(30)).await?;
    let login: serde_json::Value = reqwest::Client::new()
        .post(format!("{base}/graphql"))
        .json(&json!({ "query": format!("mutation {{ login(email: \"{ADMIN_EMAIL}\", password: \"{ADMIN_PASSWORD}\") {{ accessToken }} }}") }))
        .send()
        .await?
        .json()
        .await?;
    let token = login["data"]["login"]["accessToken"]
        .as_str()
        .context("login")?
        .to_owned();
    Ok((server, base, token))
}

//! Benchmark of issue #12.4: every failed sign-in takes the same time, so
//! timing tells no one whether an account exists or is locked. Three kinds
//! of failure are timed in interleaved rounds through the sign-in use case
//! of a `dotmac dev` store: a wrong password for an existing account (the
//! baseline), an account that does not exist, and an account locked for
//! the client asking. Prints each one's median and its ratio to the
//! baseline (1.00 means indistinguishable). Run with
//! `cargo run --release -p dotmac-benches --bin bench-login`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use dotmac_api::caller::RequestCtx;
use dotmac_api::config::Config;
use dotmac_api::service::identity::sessions;
use dotmac_schema::{SharedClock, SystemClock};

#[derive(Parser)]
struct Args {
    /// Rounds; each times one sign-in of every kind.
    #[arg(long, default_value_t = 40)]
    rounds: usize,
}

const PASSWORD: &str = "bench-password-123";
const ACCOUNT: &str = "admin@acme-fiber.demo";

fn from(client: String) -> RequestCtx {
    RequestCtx {
        client_ip: Some(client.parse().expect("an address")),
        ..RequestCtx::default()
    }
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.auth.jwt_secret = "a-bench-secret-that-is-long-enough-0123456789".into();
    config.limits.login_per_minute = u32::MAX;
    let clock: SharedClock = Arc::new(SystemClock);
    let app = dotmac_api::wiring::embedded_app(config, dir.path(), clock)
        .await
        .context("embedded app")?;
    dotmac_api::seed::seed_demo(&app, PASSWORD).await?;
    let identity = &app.identity;
    // Lock the account for one client.
    let locked_client = "192.0.2.1".to_owned();
    for _ in 0..6 {
        let _ = sessions::login(
            identity,
            &from(locked_client.clone()),
            ACCOUNT,
            "wrong-wrong-1",
        )
        .await;
    }
    let (mut wrong, mut missing, mut locked) = (Vec::new(), Vec::new(), Vec::new());
    let time = |d: &mut Vec<Duration>, at: Instant| d.push(at.elapsed());
    // Warm-up, then interleaved rounds so drift hits every kind alike.
    for round in 0..args.rounds + 3 {
        // A fresh client per round: its few failures never lock it.
        let client = format!(
            "10.{}.{}.{}",
            round / 65536 % 256,
            round / 256 % 256,
            round % 256
        );
        let at = Instant::now();
        let a = sessions::login(identity, &from(client.clone()), ACCOUNT, "wrong-wrong-1").await;
        let wrong_took = at;
        assert!(a.is_err());
        if round >= 3 {
            time(&mut wrong, wrong_took);
        }
        let at = Instant::now();
        let b = sessions::login(
            identity,
            &from(client),
            "nobody@nowhere.test",
            "wrong-wrong-1",
        )
        .await;
        assert!(b.is_err());
        if round >= 3 {
            time(&mut missing, at);
        }
        let at = Instant::now();
        let c = sessions::login(identity, &from(locked_client.clone()), ACCOUNT, PASSWORD).await;
        assert!(c.is_err(), "the locked client stays locked");
        if round >= 3 {
            time(&mut locked, at);
        }
    }
    let base = median(wrong);
    println!(
        "\nfailed sign-ins, {} interleaved rounds (median; ratio to a wrong password)",
        args.rounds
    );
    println!(
        "  wrong password (baseline) {:>8.2} ms  1.00",
        base.as_secs_f64() * 1e3
    );
    for (what, xs) in [
        ("missing account", missing),
        ("locked for this client", locked),
    ] {
        let m = median(xs);
        println!(
            "  {what:<25} {:>8.2} ms  {:.2}",
            m.as_secs_f64() * 1e3,
            m.as_secs_f64() / base.as_secs_f64()
        );
    }
    Ok(())
}

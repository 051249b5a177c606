//! No date argument can hang a worker: every date and month argument of
//! every GraphQL field and CLI command, driven with arbitrary text (and the
//! known attacks: signed and six-digit years), answers with VALIDATION or a
//! result, within a bound that only a hang would exceed.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, TestRunner};
use serde_json::{json, Value};

use crate::support::{Backend, Client, TestServer};

/// What an attacker tries first, and the edges of the accepted range.
const KNOWN: [&str; 12] = [
    "+262142-12",
    "262142-12",
    "-0001-01",
    "+262142-12-31",
    "9999-12",
    "9999-12-31",
    "1970-01",
    "1970-01-01",
    "1969-12",
    "0000-01-01",
    "2026-02-30",
    "",
];

/// Text shaped like dates (signs, long years, odd months) and anything else.
fn texts() -> impl Strategy<Value = String> {
    proptest::prop_oneof![
        "[+-]?[0-9]{1,7}-[0-9]{1,3}(-[0-9]{1,3})?",
        "[+-]?[0-9]{4,6}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
        "\\PC{0,16}",
    ]
}

fn samples(n: usize) -> Vec<String> {
    let mut runner = TestRunner::new(Config::default());
    let mut out: Vec<String> = KNOWN.iter().map(|s| (*s).to_owned()).collect();
    for _ in 0..n {
        out.push(texts().new_tree(&mut runner).unwrap().current());
    }
    out
}

/// A hang shows as this bound passing; a real answer takes milliseconds.
const BOUND: Duration = Duration::from_secs(20);

async fn answer(client: &Client, doc: &str, vars: Value) -> crate::support::Answer {
    tokio::time::timeout(BOUND, client.gql(doc, vars))
        .await
        .unwrap_or_else(|_| panic!("no answer within {BOUND:?}: {doc} {vars_}", vars_ = "…"))
}

/// The answer is a result, or an error whose code is one of `allowed`.
fn assert_answered(field: &str, text: &str, ans: &crate::support::Answer, allowed: &[&str]) {
    if let Some(code) = ans.code() {
        assert!(
            allowed.contains(&code.as_str()),
            "{field}({text:?}) answered {code}: {}",
            ans.body
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_date_argument_of_graphql_answers_with_validation_or_a_result() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    // The read-only user of the attack on reconciliation (now refused it:
    // a tenant's admin is the cheapest credential that may reconcile).
    let reader = srv.login("user@acme-fiber.demo").await;
    let tenant_admin = srv.login("admin@acme-fiber.demo").await;
    reader
        .gql(
            "{ reconciliation(month: \"2026-10\") { discrepancies } }",
            json!({}),
        )
        .await
        .expect_code("FORBIDDEN");
    let plan = admin
        .gql(
            "mutation { createPlan(input: { slug: \"dates\", version: 1, name: \"Dates\", currency: \"USD\", interval: MONTHLY, trialDays: 0, prices: [{ model: FLAT, amount: \"5\" }] }) { id } }",
            json!({}),
        )
        .await
        .data()["createPlan"]["id"]
        .clone();
    let tenant = admin
        .gql("{ tenants(first: 1) { edges { node { id } } } }", json!({}))
        .await
        .data()["tenants"]["edges"][0]["node"]["id"]
        .clone();
    let started = Instant::now();
    for text in samples(48) {
        let ans = answer(
            &tenant_admin,
            "query($m: String!) { reconciliation(month: $m) { discrepancies } }",
            json!({ "m": text }),
        )
        .await;
        assert_answered("reconciliation", &text, &ans, &["VALIDATION"]);
        let ans = answer(
            &admin,
            "mutation($m: String!) { closeBillingPeriod(month: $m) { subscriptions } }",
            json!({ "m": text }),
        )
        .await;
        assert_answered("closeBillingPeriod", &text, &ans, &["VALIDATION"]);
        let ans = answer(
            &admin,
            "mutation($t: ID!, $p: ID!, $a: String!) { subscribe(input: { tenantId: $t, planId: $p, anchorDate: $a }) { id } }",
            json!({ "t": tenant, "p": plan, "a": text }),
        )
        .await;
        // A second subscription of the tenant is a conflict, not a hang.
        assert_answered(
            "subscribe.anchorDate",
            &text,
            &ans,
            &["VALIDATION", "CONFLICT"],
        );
        let ans = answer(
            &admin,
            "mutation($f: String!) { createTaxRate(input: { jurisdiction: \"KE\", name: \"VAT\", percent: \"16\", effectiveFrom: $f }) { id } }",
            json!({ "f": text }),
        )
        .await;
        assert_answered("createTaxRate.effectiveFrom", &text, &ans, &["VALIDATION"]);
        let ans = answer(
            &reader,
            "query($f: DateTime!, $t: DateTime!) { usage(meter: \"sessions\", from: $f, to: $t) { value } }",
            json!({ "f": text, "t": "2026-11-16T00:00:00Z" }),
        )
        .await;
        // The meter does not exist in this store: NOT_FOUND when the dates pass.
        assert_answered("usage.from", &text, &ans, &["VALIDATION", "NOT_FOUND"]);
    }
    // Reported, not asserted: the bound above is what catches a hang.
    eprintln!(
        "{} date arguments answered in {:?}",
        5 * (KNOWN.len() + 48),
        started.elapsed()
    );
}

/// Seeds `data` the way `dotmac dev` does (its subscriptions are what a
/// period loop walks), then stops it.
fn seed_demo(data: &str) {
    use std::io::{BufRead, BufReader};
    let mut dev = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir", data])
        .env("DOTMAC_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dotmac dev");
    let out = dev.stdout.take().unwrap();
    let ready = BufReader::new(out)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("ready in"));
    let _ = dev.kill();
    let _ = dev.wait();
    assert!(ready, "dotmac dev seeded its demo");
}

/// The CLI's date arguments: `bill close --period/--now`, `bill reconcile
/// --period`, `bill dunning --now` exit with a message naming the argument,
/// or run; never hang.
#[test]
fn every_date_argument_of_the_cli_exits_with_a_reason_or_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    seed_demo(&data);
    let run = |args: &[&str]| -> (bool, String) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_dotmac"))
            .args(args)
            .env("DOTMAC_LOG", "error")
            // No outside service: `dunning` would otherwise wait on Postgres.
            .env("DOTMAC_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dotmac");
        let deadline = Instant::now() + BOUND;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                return (status.success(), err);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("dotmac {args:?} did not exit within {BOUND:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    for text in samples(6) {
        // `--flag=value`: clap would read a leading dash as an option.
        let period = format!("--period={text}");
        let now = format!("--now={text}");
        let valid_month = dotmac_schema::dates::parse_month(&text).is_ok();
        let (ok, err) = run(&["bill", "close", &period, "--data-dir", &data]);
        assert!(ok == valid_month, "bill close {period}: {err}");
        if !ok {
            assert!(
                err.contains("--period"),
                "the reason names the argument: {err}"
            );
        }
        let (ok, err) = run(&["bill", "reconcile", &period, "--data-dir", &data]);
        if !valid_month {
            assert!(
                !ok && err.contains("--period"),
                "bill reconcile {period}: {err}"
            );
        }
        let (ok, err) = run(&[
            "bill",
            "close",
            "--period=2026-10",
            &now,
            "--data-dir",
            &data,
        ]);
        let valid_now = chrono::DateTime::parse_from_rfc3339(&text)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
            .and_then(|t| dotmac_schema::dates::check_time(t).ok())
            .is_some();
        assert!(ok == valid_now, "bill close {now}: {err}");
        if !ok {
            assert!(
                err.contains("--now"),
                "the reason names the argument: {err}"
            );
        }
        let (ok, err) = run(&["bill", "dunning", &now]);
        assert!(!ok, "dunning cannot reach the database here");
        if !valid_now {
            assert!(err.contains("--now"), "bill dunning {now}: {err}");
        }
    }
}

//! End to end through the built binary: `dotmac dev` on a free port with a
//! temp data dir, driven by a plain HTTP client and a WebSocket client.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::json;

use crate::isolation::{next_json, subscribe};
use crate::support::Client;

struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dotmac dev` and returns it with the URL it printed.
/// Starts `dotmac dev`; returns it, its URL and what it printed up to "ready".
fn start_dev(data_dir: &std::path::Path, password: &str) -> (Running, String, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .env("DOTMAC_DEMO_PASSWORD", password)
        .env("DOTMAC_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn dotmac dev");
    let stdout = child.stdout.take().unwrap();
    let running = Running(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let ready = line.starts_with("ready in");
            printed.push(line);
            if ready {
                let _ = tx.send(std::mem::take(&mut printed));
            }
        }
    });
    let printed = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("dotmac dev printed that it is ready");
    let url = printed
        .iter()
        .find_map(|line| line.split("http://").nth(1))
        .map(|rest| format!("http://{}", rest.split('/').next().unwrap_or_default()))
        .expect("dotmac dev printed its URL");
    (running, url, printed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_binary_login_create_subscribe_suspend() {
    let dir = tempfile::tempdir().unwrap();
    let password = "e2e-demo-password";
    let (_proc, url, _) = start_dev(dir.path(), password);
    let anon = Client::anonymous(url.clone());
    // GraphiQL for a browser.
    let page = reqwest::get(format!("{url}/graphql"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.to_lowercase().contains("graphiql"));

    let admin = anon.login("admin@demo.dotmac.dev", password).await;
    let created = admin
        .gql(
            "mutation { createTenant(input: { name: \"E2E Fiber\", tier: SMALL, contactEmail: \"noc@e2e.test\" }) { id slug state } }",
            json!({}),
        )
        .await;
    let tenant = created.data()["createTenant"].clone();
    assert_eq!(tenant["slug"], "e2e-fiber");
    let id = tenant["id"].clone();

    let mut ws = subscribe(
        &url,
        admin.token.as_deref().unwrap(),
        "subscription { tenantEvents { tenantId from to reason } }",
    )
    .await;
    for m in ["provisionTenant", "activateTenant"] {
        admin
            .gql(
                &format!("mutation($id: ID!) {{ {m}(id: $id) {{ state }} }}"),
                json!({ "id": id }),
            )
            .await
            .data();
    }
    let suspended = admin
        .gql("mutation($id: ID!) { suspendTenant(id: $id, reason: \"unpaid\") { state stateReason } }", json!({ "id": id }))
        .await;
    assert_eq!(suspended.data()["suspendTenant"]["state"], "SUSPENDED");
    let mut last = json!(null);
    for _ in 0..3 {
        last = next_json(&mut ws).await;
    }
    let ev = &last["payload"]["data"]["tenantEvents"];
    assert_eq!(ev["tenantId"], id);
    assert_eq!(ev["from"], "ACTIVE");
    assert_eq!(ev["to"], "SUSPENDED");
    assert_eq!(ev["reason"], "unpaid");

    // A tenant user of another tenant: NOT_FOUND, no data.
    let other = anon.login("user@bolt-broadband.demo", password).await;
    let denied = other
        .gql(
            "query($id: ID!) { tenant(id: $id) { id name } }",
            json!({ "id": id }),
        )
        .await;
    denied.expect_code("NOT_FOUND");
    assert!(denied.body["data"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_restart_keeps_data_and_does_not_reseed() {
    let dir = tempfile::tempdir().unwrap();
    let password = "restart-password";
    let id = {
        let (_proc, url, _) = start_dev(dir.path(), password);
        let anon = Client::anonymous(url);
        let admin = anon.login("admin@demo.dotmac.dev", password).await;
        let a = admin
            .gql(
                "mutation { createTenant(input: { name: \"Survivor Net\" }) { id } }",
                json!({}),
            )
            .await;
        a.data()["createTenant"]["id"].clone()
    };
    let (_proc, url, _) = start_dev(dir.path(), password);
    let anon = Client::anonymous(url);
    let admin = anon.login("admin@demo.dotmac.dev", password).await;
    let t = admin
        .gql(
            "query($id: ID!) { tenant(id: $id) { name } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(t.data()["tenant"]["name"], "Survivor Net");
    let all = admin
        .gql(
            "{ tenants(first: 100) { edges { node { slug } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        all.data()["tenants"]["edges"].as_array().unwrap().len(),
        4,
        "three demo tenants and ours"
    );
}

#[test]
fn bad_configuration_stops_the_binary_naming_the_key() {
    let out = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .args(["config", "check"])
        .env("DOTMAC_LIMITS__MAX_BODY_BYTES", "lots")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("limits.max_body_bytes"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .args(["config", "check"])
        .env("DOTMAC_LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("`listen`"));
}

/// `dotmac serve` refuses a role that bypasses RLS, and a production install
/// is bootstrapped with `dotmac admin create-user`, then served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_binary_bootstraps_an_admin_and_refuses_rls_bypass() {
    let (owner_url, app_url) = crate::support::fresh_postgres().await;
    let env = |url: &str| {
        vec![
            ("DOTMAC_DATABASE_URL".to_owned(), url.to_owned()),
            ("DOTMAC_REDIS_URL".to_owned(), crate::support::redis_url()),
            (
                "DOTMAC_REDIS_PREFIX".to_owned(),
                crate::support::unique("dotmac_e2e"),
            ),
            (
                "DOTMAC_AUTH__JWT_SECRET".to_owned(),
                "e2e-secret-e2e-secret-e2e-secret-0001".to_owned(),
            ),
            ("DOTMAC_LOG".to_owned(), "warn".to_owned()),
        ]
    };
    // As the owner (a superuser here), serve stops and says why.
    let out = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .arg("serve")
        .envs(env(&owner_url))
        .env("DOTMAC_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("row-level security"));

    let created = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .args([
            "admin",
            "create-user",
            "--email",
            "Ops@Example.com",
            "--role",
            "platform_admin",
        ])
        .envs(env(&app_url))
        .env("DOTMAC_ADMIN_PASSWORD", "bootstrap-password-1")
        .output()
        .unwrap();
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let bad_role = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .args([
            "admin",
            "create-user",
            "--email",
            "x@example.com",
            "--role",
            "emperor",
        ])
        .envs(env(&app_url))
        .env("DOTMAC_ADMIN_PASSWORD", "bootstrap-password-1")
        .output()
        .unwrap();
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("--role"));

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _serve = Running(
        Command::new(env!("CARGO_BIN_EXE_dotmac"))
            .arg("serve")
            .envs(env(&app_url))
            .env("DOTMAC_LISTEN", format!("127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let url = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("{url}/readyz")).await {
            ready = r.status().is_success();
            if ready {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "dotmac serve did not become ready");
    let anon = Client::anonymous(url);
    let admin = anon.login("ops@example.com", "bootstrap-password-1").await;
    let me = admin.gql("{ me { email role } }", json!({})).await;
    assert_eq!(me.data()["me"]["role"], "PLATFORM_ADMIN");
    let t = admin
        .gql(
            "mutation { createTenant(input: { name: \"Prod Fiber\" }) { state } }",
            json!({}),
        )
        .await;
    assert_eq!(t.data()["createTenant"]["state"], "PENDING");
}

/// The newcomer's billing path in `dotmac dev`: the demo's plans and
/// subscriptions are seeded with last month's usage; closing last month
/// gives acme-fiber an invoice whose usage lines carry their tiers, and a
/// finalized invoice opens as HTML.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_demo_closes_last_month_and_opens_the_invoice() {
    let dir = tempfile::tempdir().unwrap();
    let password = "e2e-demo-password";
    let (_proc, url, printed) = start_dev(dir.path(), password);
    let anon = Client::anonymous(url.clone());
    let admin = anon.login("admin@demo.dotmac.dev", password).await;
    // The month the binary says to close: the demo's, whatever today is.
    let month = printed
        .iter()
        .find_map(|l| l.strip_prefix("demo billing: last month is "))
        .and_then(|rest| rest.split(';').next())
        .expect("dotmac dev names the month to close")
        .to_owned();
    let closed = admin
        .gql(
            "mutation($m: String!) { closeBillingPeriod(month: $m) { subscriptions drafted finalized } }",
            json!({ "m": month }),
        )
        .await;
    assert_eq!(
        closed.data()["closeBillingPeriod"]["subscriptions"],
        2,
        "{}",
        closed.body
    );
    let acme = anon.login("admin@acme-fiber.demo", password).await;
    let list = acme
        .gql(
            "{ invoices(first: 10) { edges { node { id status total number lines { kind meter quantity tiers { tier quantity unitPrice amount } } } } } }",
            json!({}),
        )
        .await;
    let edges = list.data()["invoices"]["edges"].as_array().unwrap().clone();
    assert_eq!(edges.len(), 1, "{}", list.body);
    let inv = &edges[0]["node"];
    let total: rust_decimal::Decimal = inv["total"].as_str().unwrap().parse().unwrap();
    assert!(
        total > rust_decimal::Decimal::from(99),
        "usage beyond the allowance: {inv}"
    );
    let bytes = inv["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["meter"] == "session-bytes")
        .unwrap();
    assert_eq!(bytes["tiers"].as_array().unwrap().len(), 2, "{bytes}");
    if inv["status"] == "FINALIZED" {
        let html = reqwest::Client::new()
            .get(format!(
                "{url}/v1/invoices/{}.html",
                inv["id"].as_str().unwrap()
            ))
            .bearer_auth(acme.token.as_deref().unwrap())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(inv["number"].as_str().unwrap()), "{html}");
    }
}

//! The outbox (#13.8): an announcement is recorded in the transaction of the
//! change it announces, so a process killed between the commit and the
//! publish loses nothing: another process's relay publishes it. Each test
//! runs the real `dotmac` binary against a serve-mode server's Postgres and
//! Redis, with the failpoint that aborts the process right after the commit,
//! and listens on the server's Redis channel.

use std::process::{Command, Stdio};
use std::time::Duration;

use dotmac_api::bus::BusEvent;
use dotmac_api::outbox::{CRASH_BEFORE_PUBLISH, FAILPOINT_VAR};
use dotmac_api::service::billing::plans::create_plan;
use dotmac_api::service::billing::subscriptions::subscribe;
use dotmac_api::store::entity::outbox;
use futures::StreamExt;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::billing::{admin, billing_server, flat, invoices, tenant_ids};
use crate::support::{redis_url, Backend, Client, TestServer, PASSWORD, TEST_NOW};

/// The variables that point a `dotmac` process at `srv`'s stores.
fn env_of(srv: &TestServer) -> Vec<(&'static str, String)> {
    let c = &srv.app.config;
    vec![
        ("DOTMAC_DATABASE_URL", c.database_url.clone()),
        ("DOTMAC_REDIS_URL", c.redis_url.clone()),
        ("DOTMAC_REDIS_PREFIX", c.redis_prefix.clone()),
        ("DOTMAC_AUTH__JWT_SECRET", c.auth.jwt_secret.clone()),
        ("DOTMAC_CLICKHOUSE_URL", c.clickhouse_url.clone()),
        ("DOTMAC_CLICKHOUSE_DATABASE", c.clickhouse_database.clone()),
        ("DOTMAC_LOG", "warn".to_owned()),
    ]
}

/// Every event on `srv`'s bus channel, as Redis delivers it.
async fn listen(srv: &TestServer) -> impl futures::Stream<Item = BusEvent> {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut pubsub = client.get_async_pubsub().await.unwrap();
    pubsub
        .subscribe(format!("{}:events", srv.app.config.redis_prefix))
        .await
        .unwrap();
    pubsub
        .into_on_message()
        .map(|m| serde_json::from_slice::<BusEvent>(m.get_payload_bytes()).unwrap())
}

/// Waits for the first event `wanted` picks, for at most 15 s.
async fn first_event<T>(
    events: &mut (impl futures::Stream<Item = BusEvent> + Unpin),
    wanted: impl Fn(&BusEvent) -> Option<T>,
) -> Option<T> {
    tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(e) = events.next().await {
            if let Some(found) = wanted(&e) {
                return Some(found);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

/// The outbox rows about `tenant`: (kind, published).
async fn outbox_rows(srv: &TestServer, tenant: &str) -> Vec<(String, bool)> {
    let tx = srv.app.store.begin_system().await.unwrap();
    let rows = outbox::Entity::find()
        .filter(outbox::Column::TenantId.eq(tenant))
        .all(&tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    rows.into_iter()
        .map(|r| (r.kind, r.published_at.is_some()))
        .collect()
}

fn died_by_abort(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(6)
}

/// `dotmac serve` creates a tenant, commits and dies before publishing; the
/// tenant's creation is still announced, by the relay of the process that
/// stayed up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_created_by_a_process_killed_before_publishing_is_announced() {
    let srv = TestServer::start(Backend::Postgres).await;
    let mut events = Box::pin(listen(&srv).await);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut doomed = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .arg("serve")
        .envs(env_of(&srv))
        .env("DOTMAC_LISTEN", format!("127.0.0.1:{port}"))
        .env(FAILPOINT_VAR, CRASH_BEFORE_PUBLISH)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(r) = reqwest::get(format!("{url}/readyz")).await {
            if r.status().is_success() {
                ready = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ready, "the doomed dotmac serve did not become ready");
    let admin = Client::anonymous(url)
        .login("admin@demo.dotmac.dev", PASSWORD)
        .await;
    // The process dies before it answers.
    let answer = admin
        .http
        .post(format!("{}/graphql", admin.url))
        .bearer_auth(admin.token.as_deref().unwrap())
        .json(&json!({ "query": "mutation { createTenant(input: { name: \"Outbox Fiber\" }) { id } }" }))
        .send()
        .await;
    assert!(answer.is_err(), "the failpoint let the request answer");
    let status = tokio::task::spawn_blocking(move || doomed.wait().unwrap())
        .await
        .unwrap();
    assert!(died_by_abort(status), "{status:?}");

    // The creation committed; its announcement was recorded with it.
    let created = srv
        .login("admin@demo.dotmac.dev")
        .await
        .gql(
            "{ tenants(first: 50) { edges { node { id name } } } }",
            json!({}),
        )
        .await;
    let id = created.data()["tenants"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["name"] == "Outbox Fiber")
        .map(|e| e["node"]["id"].as_str().unwrap().to_owned())
        .expect("the tenant was committed");
    let announced = first_event(&mut events, |e| match e {
        BusEvent::Tenant(t) if t.tenant_id == id && t.from.is_none() => Some(t.clone()),
        _ => None,
    })
    .await
    .expect("the creation was announced after the crash");
    assert_eq!(announced.to, dotmac_schema::TenantState::Pending);
    // Marked published by the relay that sent it.
    let mut rows = outbox_rows(&srv, &id).await;
    for _ in 0..50 {
        if rows.iter().all(|(_, published)| *published) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        rows = outbox_rows(&srv, &id).await;
    }
    assert_eq!(rows, vec![("tenant".to_owned(), true)]);
}

/// `dotmac bill close` finalizes an invoice, commits its chunk and dies
/// before publishing; `invoiceFinalized` still goes out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invoice_finalized_by_a_close_killed_before_publishing_is_announced() {
    let srv = billing_server(Backend::Postgres).await;
    let app = &srv.app;
    let ctx = admin();
    let plan = create_plan(&app.billing, &ctx, "Flat", flat("flat", 99))
        .await
        .unwrap();
    let (a, _) = tenant_ids(app).await;
    subscribe(
        &app.billing,
        &ctx,
        &a,
        &plan.id,
        chrono::NaiveDate::from_ymd_opt(2026, 10, 1),
        Default::default(),
    )
    .await
    .unwrap();
    let mut events = Box::pin(listen(&srv).await);
    let out = Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .args([
            "bill",
            "close",
            "--period",
            "2026-10",
            "--grace-days",
            "0",
            "--now",
            TEST_NOW,
        ])
        .envs(env_of(&srv))
        .env(FAILPOINT_VAR, CRASH_BEFORE_PUBLISH)
        .output()
        .unwrap();
    assert!(
        died_by_abort(out.status),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let finalized = invoices(app)
        .await
        .into_iter()
        .find(|i| i.tenant_id == a)
        .expect("the chunk committed");
    let number = finalized.number.clone().expect("finalized, numbered");
    let announced = first_event(&mut events, |e| match e {
        BusEvent::Invoice(i) if i.invoice_id == finalized.id => Some(i.clone()),
        _ => None,
    })
    .await
    .expect("the invoice was announced after the crash");
    assert_eq!(announced.number, number);
    assert_eq!(announced.total, "99.00");
}

//! Tenants' secrets rotate on the schedule (`orchestrator.rotate_secrets_days`)
//! and not before, each rotation a new version delivered to the instance;
//! the schedule reads the injected clock, so the test moves time, not waits
//! for it.

use std::time::Duration;

use chrono::TimeDelta;
use serde_json::{json, Value};

use crate::support::{Backend, Client, TestServer};

async fn acme_instance(admin: &Client) -> Value {
    let list = admin
        .gql(
            "{ tenants(first: 10) { edges { node { slug instance { phase ready secretsVersion } } } } }",
            json!({}),
        )
        .await;
    list.data()["tenants"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["slug"] == "acme-fiber")
        .unwrap()["node"]["instance"]
        .clone()
}

async fn secrets_version_within(admin: &Client, want: i64, within: Duration) -> Value {
    let until = tokio::time::Instant::now() + within;
    loop {
        let i = acme_instance(admin).await;
        if i["secretsVersion"].as_i64() == Some(want) && i["ready"] == true {
            return i;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "secrets never reached version {want}: {i}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_rotate_on_schedule_and_not_before() {
    let cluster = tempfile::tempdir().unwrap();
    let local_dir = cluster.path().join("cluster").display().to_string();
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.orchestrator.target = dotmac_api::config::OrchestratorTarget::Local;
        c.orchestrator.local_dir = local_dir;
        c.orchestrator.rotate_secrets_days = 30;
    })
    .await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    secrets_version_within(&admin, 1, Duration::from_secs(30)).await;
    // Ten days on, nothing is due: two schedule passes later, still version 1.
    // (Moving the clock expires access tokens: sign in again after each move.)
    srv.clock.advance(TimeDelta::days(10));
    let admin = srv.login("admin@demo.dotmac.dev").await;
    tokio::time::sleep(Duration::from_secs(21)).await;
    assert_eq!(acme_instance(&admin).await["secretsVersion"], 1);
    // Past thirty days: rotated once, delivered as version 2.
    srv.clock.advance(TimeDelta::days(21));
    let admin = srv.login("admin@demo.dotmac.dev").await;
    secrets_version_within(&admin, 2, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        acme_instance(&admin).await["secretsVersion"],
        2,
        "once per period"
    );
    // Audited as the platform's own job, with no value in the record.
    let audit = admin
        .gql(
            "{ auditLog(first: 100) { edges { node { action actor before after } } } }",
            json!({}),
        )
        .await;
    let text = audit.body.to_string();
    assert!(
        text.contains("tenant.instance.rotate_secrets") && text.contains("system:rotation"),
        "{text}"
    );
}

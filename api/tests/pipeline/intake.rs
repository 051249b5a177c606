//! `POST /v1/events`: API-key authentication bound to the tenant, one
//! verdict per event, answered after the broker acknowledged, and the
//! accepted events aggregated.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{event, Pipeline};

pub async fn api_key(p: &Pipeline, tenant: &str, scopes: &str) -> String {
    let created = p
        .admin
        .gql(
            &format!("mutation($t: ID!) {{ createApiKey(tenantId: $t, scopes: [{scopes}], name: \"edge\") {{ secret }} }}"),
            json!({ "t": tenant }),
        )
        .await;
    created.data()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned()
}

pub async fn post(
    p: &Pipeline,
    key: Option<&str>,
    content_type: &str,
    body: String,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{}/v1/events", p.server.url))
        .header("content-type", content_type)
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let resp = req.send().await.unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

pub const BATCH: &str = "application/cloudevents-batch+json";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_answers_per_event_and_accepted_events_are_aggregated() {
    let p = Pipeline::start().await;
    p.create_meter(json!({
        "slug": "gigabytes", "name": "GB", "eventType": "transfer", "aggregation": "SUM",
        "valuePath": "gb", "groupBy": ["plan"], "window": "DAY"
    }))
    .await;
    let tenant = p.tenant("acme-fiber");
    let key = api_key(&p, &tenant, "USAGE_WRITE").await;
    let now = p.server.clock.now().to_rfc3339();
    let ev = |id: &str, gb: Value| event(id, "transfer", &now, json!({ "gb": gb, "plan": "home" }));

    // Authentication and authorization.
    let body = json!([ev("a", json!(1))]).to_string();
    assert_eq!(post(&p, None, BATCH, body.clone()).await.0, 401);
    let read_only = api_key(&p, &tenant, "LICENSE_READ").await;
    let (status, answer) = post(&p, Some(&read_only), BATCH, body.clone()).await;
    assert_eq!(status, 403, "{answer}");
    let user = p.server.login("admin@acme-fiber.demo").await;
    assert_eq!(
        post(&p, user.token.as_deref(), BATCH, body.clone()).await.0,
        403
    );
    // Whole-body refusals.
    assert_eq!(
        post(&p, Some(&key), "text/plain", body.clone()).await.0,
        415
    );
    let (status, answer) = post(&p, Some(&key), BATCH, "{}".into()).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("body:"),
        "{answer}"
    );

    // A mixed batch: the bad event does not block the good ones.
    let mut bad = ev("b", json!(2));
    bad.as_object_mut().unwrap().remove("time");
    let batch = json!([
        ev("a", json!("1.25")),
        bad,
        ev("c", json!(3)),
        ev("a", json!("1.25"))
    ]);
    let (status, answer) = post(&p, Some(&key), BATCH, batch.to_string()).await;
    assert_eq!(status, 207, "{answer}");
    assert_eq!(answer["accepted"], 3);
    assert_eq!(answer["rejected"], 1);
    assert_eq!(answer["results"][1]["status"], "rejected");
    assert_eq!(answer["results"][1]["field"], "time");
    assert_eq!(answer["results"][2]["status"], "accepted");
    // A single event.
    let (status, answer) = post(
        &p,
        Some(&key),
        "application/cloudevents+json",
        ev("d", json!(10)).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");

    let agg = p.spawn_aggregator();
    let totals = p.wait_for_records(4, Duration::from_secs(90)).await;
    agg.stop().await;
    // "a" was sent twice: it counts once.
    assert_eq!((totals.accepted, totals.duplicates), (3, 1));
    let rollups = p.rollups("gigabytes").await;
    assert_eq!(rollups.len(), 1);
    let (k, state) = rollups.into_iter().next().unwrap();
    assert_eq!(k.tenant, tenant, "the tenant comes from the API key");
    assert_eq!(k.group, vec![("plan".to_owned(), "home".to_owned())]);
    assert_eq!(state.value(), rust_decimal::Decimal::new(1425, 2));
    p.cleanup().await;
}

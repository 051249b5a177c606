//! The embedded usage pipeline of `dotmac dev`: `POST /v1/events` into the
//! in-process log, the same fold as the aggregator, and `usage` reading the
//! result exactly (duplicates once, coarser granularity merged).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{Backend, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_meters_usage_in_process() {
    let srv = TestServer::start(Backend::Sqlite).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    admin
        .gql(
            "mutation { createMeter(input: { slug: \"dev-bytes\", name: \"Bytes\", eventType: \"session\", aggregation: SUM, valuePath: \"bytes\", groupBy: [\"region\"], window: HOUR }) { id } }",
            json!({}),
        )
        .await
        .data();
    let tenants = admin
        .gql(
            "{ tenants(first: 10) { edges { node { id slug } } } }",
            json!({}),
        )
        .await;
    let acme = tenants.data()["tenants"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["slug"] == "acme-fiber")
        .unwrap()["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let key = admin
        .gql(
            "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE], name: \"dev\") { secret } }",
            json!({ "t": acme }),
        )
        .await
        .data()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let now = srv.clock.now();
    let ev = |id: &str, bytes: &str, region: &str| {
        json!({ "specversion": "1.0", "id": id, "source": "//dev", "type": "session",
                "time": now.to_rfc3339(), "data": { "bytes": bytes, "region": region } })
    };
    // A number beyond 10^15 is refused at intake, naming `data`.
    let huge = json!({ "specversion": "1.0", "id": "huge", "source": "//dev", "type": "session",
                       "time": now.to_rfc3339(), "data": { "bytes": 5e28, "region": "north" } });
    let batch = json!([ev("a", "1.5", "north"), ev("b", "2.25", "south"), ev("a", "1.5", "north"), { "id": "bad" }, huge]);
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/events", srv.url))
        .bearer_auth(&key)
        .header("content-type", "application/cloudevents-batch+json")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 207);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(
        (answer["accepted"].clone(), answer["rejected"].clone()),
        (json!(3), json!(2))
    );
    assert_eq!(answer["results"][4]["field"], "data", "{answer}");

    let user = srv.login("user@acme-fiber.demo").await;
    let query = |granularity: &str| json!({ "f": (now - chrono::TimeDelta::days(1)).to_rfc3339(), "t": (now + chrono::TimeDelta::hours(1)).to_rfc3339(), "g": granularity });
    let doc = "query($f: DateTime!, $t: DateTime!, $g: Window) { usage(meter: \"dev-bytes\", from: $f, to: $t, granularity: $g) { tenantId group { property value } value } }";
    let deadline = Instant::now() + Duration::from_secs(20);
    let points = loop {
        let ans = user.gql(doc, query("HOUR")).await;
        let points = ans.data()["usage"].as_array().unwrap().clone();
        if points.len() == 2 || Instant::now() > deadline {
            break points;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let values: Vec<(String, String)> = points
        .iter()
        .map(|p| {
            (
                p["group"][0]["value"].as_str().unwrap().to_owned(),
                p["value"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // "a" arrived twice and counts once.
    assert_eq!(
        values,
        vec![
            ("north".into(), "1.5".into()),
            ("south".into(), "2.25".into())
        ]
    );
    assert!(points.iter().all(|p| p["tenantId"] == json!(acme)));
    // A coarser granularity without the group merges exactly.
    let day = user
        .gql(
            "query($f: DateTime!, $t: DateTime!) { usage(meter: \"dev-bytes\", from: $f, to: $t, granularity: DAY, groupBy: []) { value } }",
            query("DAY"),
        )
        .await;
    let total: rust_decimal::Decimal = day.data()["usage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["value"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(total, rust_decimal::Decimal::new(375, 2));
    // A finer granularity than the meter's window is refused, naming the field.
    user.gql(doc, query("MINUTE"))
        .await
        .expect_code("VALIDATION");
}

//! Every route is rate-limited, per tenant (its users and keys share one
//! bucket), per platform staff member, and per client address without a
//! credential; a page's size counts against the GraphQL complexity limit.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::billing::tenant_id;
use crate::support::{Backend, Client, TestServer};

/// One GraphQL request's status, code and `retry-after`.
async fn gql_status(c: &Client, doc: &str) -> (u16, Option<String>, Option<String>) {
    let mut req = c
        .http
        .post(format!("{}/graphql", c.url))
        .json(&json!({ "query": doc }));
    if let Some(t) = &c.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let code = body["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_owned);
    (status, code, retry)
}

/// Sends `doc` until it is refused; the number of requests that passed.
async fn passes_until_limited(c: &Client, doc: &str) -> usize {
    for n in 0..20 {
        let (status, code, retry) = gql_status(c, doc).await;
        if status == 429 {
            assert_eq!(code.as_deref(), Some("RATE_LIMITED"));
            assert!(retry.is_some(), "429 without retry-after");
            return n;
        }
    }
    panic!("never limited: {doc}");
}

async fn rest(srv: &TestServer, method: &str, path: &str, token: &str, body: Option<Value>) -> u16 {
    let http = reqwest::Client::new();
    let url = format!("{}{path}", srv.url);
    let req = match method {
        "POST" => http
            .post(url)
            .header("content-type", "application/cloudevents-batch+json")
            .body(body.unwrap_or(Value::Null).to_string()),
        _ => http.get(url),
    };
    req.bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// The first answer to a WebSocket `connection_init` with `token`: the
/// message type, or `closed` when the server closed the socket.
async fn ws_init(srv: &TestServer, token: &str) -> String {
    let url = format!("{}/graphql", srv.url.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string())).await.unwrap();
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("an answer within 10 s");
        match msg {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                return v["type"].as_str().unwrap_or_default().to_owned();
            }
            Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return "closed".into(),
            Some(Ok(_)) => {}
        }
    }
}

#[tokio::test]
async fn every_route_answers_429_past_its_rate() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        // Rates so slow that no token comes back during the test: only the
        // burst passes.
        let srv = TestServer::start_with(backend, |c| {
            c.limits.tenant_per_minute = 1;
            c.limits.tenant_burst = 4;
            c.limits.principal_per_minute = 1;
            c.limits.principal_burst = 4;
            c.limits.staff_per_minute = 1;
            c.limits.staff_burst = 4;
            c.limits.anonymous_per_minute = 8;
        })
        .await;
        let admin = srv.login("admin@demo.dotmac.dev").await; // anonymous: 1
        let acme = tenant_id(&srv.app, "acme-fiber").await;
        let key_doc = "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE], name: \"rl\") { secret } }";
        let key = admin.gql(key_doc, json!({ "t": acme })).await.data()["createApiKey"]["secret"] // staff: 1
            .as_str()
            .unwrap()
            .to_owned();
        // Platform staff are limited too, at their own rate.
        assert_eq!(
            passes_until_limited(&admin, "{ me { email } }").await,
            3,
            "{backend:?}"
        );

        // One tenant's bucket: its user's GraphQL and its key's /v1 calls
        // draw from it, and once it is empty every route answers 429.
        let tenant_admin = srv.login("admin@acme-fiber.demo").await; // anonymous: 2
        assert_eq!(rest(&srv, "GET", "/v1/whoami", &key, None).await, 200);
        let token = tenant_admin.token.clone().unwrap();
        assert_eq!(
            passes_until_limited(&tenant_admin, "{ me { email } }").await,
            3,
            "{backend:?}: the key's call drew from the tenant's bucket"
        );
        assert_eq!(rest(&srv, "GET", "/v1/whoami", &key, None).await, 429);
        let event = json!([{ "specversion": "1.0", "id": "rl-1", "source": "//rl", "type": "session",
                             "time": srv.clock.now().to_rfc3339(), "data": {} }]);
        assert_eq!(
            rest(&srv, "POST", "/v1/events", &key, Some(event)).await,
            429
        );
        assert_eq!(
            rest(&srv, "GET", "/v1/invoices/inv_x.html", &token, None).await,
            429
        );
        assert_ne!(ws_init(&srv, &token).await, "connection_ack", "{backend:?}");
        // Another tenant's bucket is untouched.
        let bolt_admin = srv.login("admin@bolt-broadband.demo").await; // anonymous: 3
        gql_status(&bolt_admin, "{ me { email } }").await;
        assert_eq!(gql_status(&bolt_admin, "{ me { email } }").await.0, 200);

        // Without a credential: per client address, whatever the mutation.
        let anon = srv.anonymous();
        let refresh = "mutation { refreshToken(refreshToken: \"nope\") { accessToken } }";
        assert_eq!(passes_until_limited(&anon, refresh).await, 5, "{backend:?}");
        let accept = "mutation { acceptInvitation(token: \"nope\", password: \"long-enough-password\") { accessToken } }";
        assert_eq!(gql_status(&anon, accept).await.0, 429);
    }
}

#[tokio::test]
async fn page_sizes_count_against_the_complexity_limit() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.graphql.max_complexity = 500;
    })
    .await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let doc = |first: u32| {
        format!("{{ tenants(first: {first}) {{ edges {{ node {{ id name slug state tier userCount apiKeyCount reseller {{ id name }} }} }} }} }}")
    };
    // Twelve fields an item: five items pass, a hundred do not, however
    // few tenants there are.
    admin.gql(&doc(5), json!({})).await.data();
    let big = admin.gql(&doc(100), json!({})).await;
    assert!(
        big.errors()[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("complex"),
        "{}",
        big.body
    );
}

#[tokio::test]
async fn one_busy_credential_cannot_starve_its_tenants_others() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let srv = TestServer::start_with(backend, |c| {
            c.limits.tenant_per_minute = 1;
            c.limits.tenant_burst = 10;
            c.limits.principal_per_minute = 1;
            c.limits.principal_burst = 3;
        })
        .await;
        let admin = srv.login("admin@demo.dotmac.dev").await;
        let acme = tenant_id(&srv.app, "acme-fiber").await;
        let key_doc =
            "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE]) { secret } }";
        let mut keys = Vec::new();
        for _ in 0..2 {
            let k = admin.gql(key_doc, json!({ "t": acme })).await;
            keys.push(
                k.data()["createApiKey"]["secret"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        // The first key uses up its own bucket...
        let statuses: Vec<u16> = futures::future::join_all(
            (0..4).map(|_| rest(&srv, "GET", "/v1/whoami", &keys[0], None)),
        )
        .await;
        assert_eq!(
            statuses.iter().filter(|s| **s == 429).count(),
            1,
            "{backend:?}: {statuses:?}"
        );
        // ...and the tenant's other key is still served from the shared one.
        assert_eq!(
            rest(&srv, "GET", "/v1/whoami", &keys[1], None).await,
            200,
            "{backend:?}"
        );
    }
}

//! One error mapping across transports: every code a transport can answer
//! is provoked through it with a real request, and the HTTP status and the
//! body's code must agree with the one table below, whichever route
//! answered (GraphQL before and during execution, `/v1/events`, invoice
//! documents, the payment webhook, `whoami`).

use chrono::NaiveDate;
use dotmac_api::service::billing::plans::create_plan;
use dotmac_api::service::billing::subscriptions::subscribe;
use serde_json::{json, Value};

use crate::billing::{admin, close, flat, tenant_ids};
use crate::support::{Backend, Client, TestServer, PASSWORD};

const SECRET: &str = "whsec_test_0123456789abcdef0123456789abcdef";

/// Each code's HTTP status, written here independently of the code under test.
fn status_of(code: &str) -> u16 {
    match code {
        "VALIDATION" => 400,
        "UNAUTHENTICATED" => 401,
        "FORBIDDEN" => 403,
        "NOT_FOUND" => 404,
        "CONFLICT" => 409,
        "UNSUPPORTED_MEDIA_TYPE" => 415,
        "RATE_LIMITED" => 429,
        "INTERNAL" => 500,
        "UNAVAILABLE" => 503,
        other => panic!("unknown code {other}"),
    }
}

/// A `/v1` answer: its status must be its code's.
fn assert_rest(route: &str, want: &str, status: u16, body: &Value) {
    assert_eq!(
        body["error"]["code"].as_str(),
        Some(want),
        "{route}: body {body}"
    );
    assert_eq!(
        status,
        status_of(want),
        "{route} answered {want} with {status}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{route}: a message says why: {body}"
    );
}

async fn send(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn every_code_answers_with_its_status_on_every_transport() {
    let srv = TestServer::start_with(Backend::Postgres, |c| {
        c.billing.payment_webhook_secret = SECRET.into();
    })
    .await;
    crate::support::usage_tables(&srv.app).await;
    let http = reqwest::Client::new();
    let admin_client = srv.login("admin@demo.dotmac.dev").await;
    let support = srv.login("support@demo.dotmac.dev").await;
    let reseller = srv.login("reseller@demo.dotmac.dev").await;
    let acme_admin = srv.login("admin@acme-fiber.demo").await;
    let bolt_admin = srv.login("admin@bolt-broadband.demo").await;
    let anonymous = srv.anonymous();

    // --- GraphQL, during execution: HTTP 200, the code in the extensions.
    let (a, b) = tenant_ids(&srv.app).await;
    let executed: Vec<(&str, &Client, String, Value)> = vec![
        (
            "VALIDATION",
            &admin_client,
            "{ tenants(first: 0) { edges { node { id } } } }".into(),
            json!({}),
        ),
        (
            "UNAUTHENTICATED",
            &anonymous,
            "{ me { id } }".into(),
            json!({}),
        ),
        (
            "FORBIDDEN",
            &support,
            "mutation { createTenant(input: { name: \"Nope\" }) { id } }".into(),
            json!({}),
        ),
        (
            "NOT_FOUND",
            &acme_admin,
            "query($id: ID!) { tenant(id: $id) { id } }".into(),
            json!({ "id": b }),
        ),
        (
            "CONFLICT",
            &admin_client,
            "mutation { createTenant(input: { name: \"Acme again\", slug: \"acme-fiber\" }) { id } }"
                .into(),
            json!({}),
        ),
    ];
    for (want, client, doc, vars) in executed {
        let ans = client.gql(&doc, vars).await;
        assert_eq!(ans.status, 200, "GraphQL {want}: {}", ans.body);
        assert_eq!(ans.code().as_deref(), Some(want), "GraphQL: {}", ans.body);
    }

    // --- GraphQL, before execution: the code's status, GraphQL's shape.
    let (status, body) = send(
        http.post(format!("{}/graphql", srv.url))
            .bearer_auth("not-a-token")
            .json(&json!({ "query": "{ me { id } }" })),
    )
    .await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    assert_eq!(status, status_of("UNAUTHENTICATED"), "{body}");

    // --- /v1/events (no broker on this server).
    let events = |token: Option<&str>, content_type: &str, body: &str| {
        let mut r = http
            .post(format!("{}/v1/events", srv.url))
            .header("content-type", content_type)
            .body(body.to_owned());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r
    };
    let key = admin_client
        .gql(
            "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE]) { secret } }",
            json!({ "t": a }),
        )
        .await
        .data()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let batch = "application/cloudevents-batch+json";
    let one = json!([{ "specversion": "1.0", "id": "e1", "source": "//t", "type": "t",
        "time": srv.clock.now().to_rfc3339(), "data": {} }])
    .to_string();
    for (want, token, content_type, body) in [
        ("UNAUTHENTICATED", None, batch, "[]"),
        (
            "UNAUTHENTICATED",
            Some("dmk_000000000000_nope"),
            batch,
            "[]",
        ),
        ("FORBIDDEN", acme_admin.token.as_deref(), batch, "[]"),
        (
            "UNSUPPORTED_MEDIA_TYPE",
            Some(key.as_str()),
            "text/plain",
            "[]",
        ),
        ("VALIDATION", Some(key.as_str()), batch, "{ not json"),
        ("UNAVAILABLE", Some(key.as_str()), batch, one.as_str()),
    ] {
        let (status, body) = send(events(token, content_type, body)).await;
        assert_rest("/v1/events", want, status, &body);
    }

    // --- whoami.
    let (status, body) = send(http.get(format!("{}/v1/whoami", srv.url))).await;
    assert_rest("/v1/whoami", "UNAUTHENTICATED", status, &body);

    // --- Invoice documents: a draft of A's, then finalized.
    let ctx = admin();
    let plan = create_plan(&srv.app.billing, &ctx, "Flat", flat("flat", 10))
        .await
        .unwrap();
    subscribe(
        &srv.app.billing,
        &ctx,
        &a,
        &plan.id,
        NaiveDate::from_ymd_opt(2026, 10, 1),
        Default::default(),
    )
    .await
    .unwrap();
    close(&srv.app, "2026-10-01", "2026-11-02T00:00:00Z").await;
    let invoice_id = |client: &Client| {
        let client = client.clone();
        async move {
            client
                .gql(
                    "{ invoices(first: 1) { edges { node { id } } } }",
                    json!({}),
                )
                .await
                .data()["invoices"]["edges"][0]["node"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let inv = invoice_id(&acme_admin).await;
    let doc = |client: Option<&Client>, id: &str| {
        let mut r = http.get(format!("{}/v1/invoices/{id}.html", srv.url));
        if let Some(t) = client.and_then(|c| c.token.as_deref()) {
            r = r.bearer_auth(t);
        }
        r
    };
    let route = "/v1/invoices";
    let (status, body) = send(doc(Some(&acme_admin), &inv)).await;
    assert_rest(route, "CONFLICT", status, &body);
    close(&srv.app, "2026-10-01", "2026-11-28T00:00:00Z").await;
    for (want, client, id) in [
        ("UNAUTHENTICATED", None, inv.as_str()),
        ("NOT_FOUND", Some(&bolt_admin), inv.as_str()),
        ("NOT_FOUND", Some(&acme_admin), "inv_nonsense"),
        ("FORBIDDEN", Some(&reseller), inv.as_str()),
    ] {
        let (status, body) = send(doc(client, id)).await;
        assert_rest(route, want, status, &body);
    }
    let resp = doc(Some(&acme_admin), &inv).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "the finalized invoice opens");

    // --- The payment webhook.
    let now = srv.clock.now().timestamp();
    let webhook = |body: String, signature: Option<String>| {
        let mut r = http
            .post(format!("{}/v1/webhooks/payments", srv.url))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            r = r.header("dotmac-signature", s);
        }
        r
    };
    let sign = |b: &str| Some(dotmac_api::http::payments::sign(SECRET, now, b.as_bytes()));
    let pay = |invoice: &str, amount: &str, reference: &str| {
        json!({ "invoiceId": invoice, "amount": amount, "currency": "USD", "reference": reference })
            .to_string()
    };
    let route = "/v1/webhooks/payments";
    let first = pay(&inv, "4.00", "ref-1");
    let (status, body) = send(webhook(first.clone(), sign(&first))).await;
    assert_eq!(status, 200, "{body}");
    let reused = pay(&inv, "5.00", "ref-1");
    let unknown = pay(
        &dotmac_schema::InvoiceId::new().to_string(),
        "1.00",
        "ref-2",
    );
    for (want, body, signature) in [
        ("UNAUTHENTICATED", first.clone(), None),
        (
            "UNAUTHENTICATED",
            first.clone(),
            Some(dotmac_api::http::payments::sign(
                "another",
                now,
                first.as_bytes(),
            )),
        ),
        (
            "VALIDATION",
            "{\"nope\": 1}".to_owned(),
            sign("{\"nope\": 1}"),
        ),
        ("NOT_FOUND", unknown.clone(), sign(&unknown)),
        ("CONFLICT", reused.clone(), sign(&reused)),
    ] {
        let (status, answer) = send(webhook(body, signature)).await;
        assert_rest(route, want, status, &answer);
    }
}

/// The codes that need another configuration: a webhook that is not set
/// up, and a tenant over its request rate (GraphQL, before execution).
#[tokio::test]
async fn unconfigured_webhook_and_rate_limits_answer_with_their_status() {
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.limits.tenant_per_minute = 1;
        c.limits.tenant_burst = 1;
    })
    .await;
    let http = reqwest::Client::new();
    let (status, body) = send(
        http.post(format!("{}/v1/webhooks/payments", srv.url))
            .body("{}"),
    )
    .await;
    assert_rest("/v1/webhooks/payments", "NOT_FOUND", status, &body);

    let user = srv
        .anonymous()
        .login("user@acme-fiber.demo", PASSWORD)
        .await;
    let mut limited = None;
    for _ in 0..5 {
        let ans = user.gql("{ me { id } }", json!({})).await;
        if ans.status != 200 {
            limited = Some(ans);
            break;
        }
    }
    let ans = limited.expect("the tenant's rate is exceeded within five requests");
    assert_eq!(ans.code().as_deref(), Some("RATE_LIMITED"), "{}", ans.body);
    assert_eq!(ans.status, status_of("RATE_LIMITED"));
}

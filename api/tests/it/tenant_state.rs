//! Credentials follow their tenant's state and their user's sign-outs, on
//! both stores: a cancelled or deprovisioned tenant's users, tokens,
//! refresh tokens, API keys and invitations are all refused; a suspended
//! tenant's users read (and mutate nothing), its API keys report only usage
//! timed before the suspension; a reseller cannot lift a suspension for
//! non-payment; signing out or changing the password revokes access tokens
//! at once.

use chrono::TimeDelta;
use dotmac_api::caller::RequestCtx;
use dotmac_api::service::directory::tenants::{self, NON_PAYMENT};
use dotmac_schema::TenantAction;
use serde_json::{json, Value};

use crate::billing::tenant_id;
use crate::support::{Backend, TestServer, PASSWORD};

const LOGIN: &str = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken refreshToken } }";
const REFRESH: &str = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken } }";
const INVITE: &str = "mutation($t: ID!, $e: String!) { inviteUser(input: { email: $e, role: TENANT_USER, tenantId: $t }) { token } }";
const ACCEPT: &str = "mutation($t: String!) { acceptInvitation(token: $t, password: \"a-long-enough-password\") { accessToken } }";
const KEY: &str = "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE], name: \"edge\") { secret } }";

/// A server whose intake works on both stores (a broker for Postgres).
async fn server(backend: Backend) -> TestServer {
    let name = crate::support::unique("dotmac_t").replace('-', "_");
    let srv = TestServer::start_with(backend, |c| {
        if backend == Backend::Postgres {
            c.kafka_brokers = std::env::var("DOTMAC_TEST_KAFKA_BROKERS")
                .unwrap_or_else(|_| "127.0.0.1:9092".into());
            c.pipeline.events_topic = format!("{name}.usage.events");
            c.pipeline.dead_letter_topic = format!("{name}.usage.dead-letter");
        }
    })
    .await;
    if backend == Backend::Postgres {
        let config = &srv.app.config;
        dotmac_ingest::kafka::create_topics(
            &config.kafka_brokers,
            &config.kafka_security,
            &config.topics(),
        )
        .await
        .expect("topics");
    }
    srv
}

/// (access token, refresh token) of a fresh sign-in, or the error code.
async fn sign_in(srv: &TestServer, email: &str) -> Result<(String, String), String> {
    let a = srv
        .anonymous()
        .gql(LOGIN, json!({ "e": email, "p": PASSWORD }))
        .await;
    match a.code() {
        Some(code) => Err(code),
        None => Ok((
            a.data()["login"]["accessToken"]
                .as_str()
                .unwrap()
                .to_owned(),
            a.data()["login"]["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned(),
        )),
    }
}

async fn whoami(srv: &TestServer, key: &str) -> u16 {
    reqwest::Client::new()
        .get(format!("{}/v1/whoami", srv.url))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Sends one event timed `at`; the status and the answer.
async fn send_event(
    srv: &TestServer,
    key: &str,
    id: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> (u16, Value) {
    let event = json!([{ "specversion": "1.0", "id": id, "source": "//edge", "type": "session",
                         "time": at.to_rfc3339(), "data": { "bytes": "1" } }]);
    let resp = reqwest::Client::new()
        .post(format!("{}/v1/events", srv.url))
        .bearer_auth(key)
        .header("content-type", "application/cloudevents-batch+json")
        .body(event.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn credentials_follow_the_tenant_state(backend: Backend) {
    let srv = server(backend).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let acme = tenant_id(&srv.app, "acme-fiber").await;
    let key = admin.gql(KEY, json!({ "t": acme })).await.data()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let invite = |email: &'static str| {
        let admin = admin.clone();
        let acme = acme.clone();
        async move {
            admin
                .gql(INVITE, json!({ "t": acme, "e": email }))
                .await
                .data()["inviteUser"]["token"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    let invitation = invite("late@acme-fiber.demo").await;
    let (access, refresh) = sign_in(&srv, "admin@acme-fiber.demo").await.unwrap();
    let tenant_admin = srv.anonymous().with_token(&access);
    let before = srv.clock.now();
    srv.clock.advance(TimeDelta::minutes(1));

    // Suspended: reads work, mutations do not; the key reports only what
    // happened before the suspension.
    admin
        .gql(
            "mutation($id: ID!) { suspendTenant(id: $id, reason: \"unpaid\") { state } }",
            json!({ "id": acme }),
        )
        .await
        .data();
    let suspended_at = srv.clock.now();
    srv.clock.advance(TimeDelta::minutes(1));
    tenant_admin.gql("{ me { email } }", json!({})).await.data();
    tenant_admin
        .gql(
            "{ invoices(first: 5) { edges { node { id } } } }",
            json!({}),
        )
        .await
        .data();
    tenant_admin
        .gql(KEY, json!({ "t": acme }))
        .await
        .expect_code("FORBIDDEN");
    tenant_admin
        .gql(INVITE, json!({ "t": acme, "e": "x@acme-fiber.demo" }))
        .await
        .expect_code("FORBIDDEN");
    let (again, _) = sign_in(&srv, "admin@acme-fiber.demo")
        .await
        .expect("suspended users sign in");
    srv.anonymous()
        .with_token(&again)
        .gql(KEY, json!({ "t": acme }))
        .await
        .expect_code("FORBIDDEN");
    assert_eq!(whoami(&srv, &key).await, 403, "{backend:?}");
    let (status, answer) = send_event(&srv, &key, "before", before).await;
    assert_eq!((status, &answer["accepted"]), (200, &json!(1)), "{answer}");
    let (status, answer) =
        send_event(&srv, &key, "after", suspended_at + TimeDelta::seconds(1)).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["results"][0]["field"], "time", "{answer}");

    // Reactivated: everything works again.
    admin
        .gql(
            "mutation($id: ID!) { reactivateTenant(id: $id) { state } }",
            json!({ "id": acme }),
        )
        .await
        .data();
    tenant_admin.gql(KEY, json!({ "t": acme })).await.data();
    assert_eq!(whoami(&srv, &key).await, 200);

    // Cancelled, then deprovisioned: every credential is refused.
    admin
        .gql(
            "mutation($id: ID!) { cancelTenant(id: $id, reason: \"left\") { state } }",
            json!({ "id": acme }),
        )
        .await
        .data();
    for state in ["cancelled", "deprovisioned"] {
        if state == "deprovisioned" {
            admin
                .gql(
                    "mutation($id: ID!) { deprovisionTenant(id: $id) { state } }",
                    json!({ "id": acme }),
                )
                .await
                .data();
        }
        tenant_admin
            .gql("{ me { email } }", json!({}))
            .await
            .expect_code("UNAUTHENTICATED");
        assert_eq!(
            sign_in(&srv, "admin@acme-fiber.demo").await.unwrap_err(),
            "UNAUTHENTICATED",
            "{state}"
        );
        srv.anonymous()
            .gql(REFRESH, json!({ "t": refresh }))
            .await
            .expect_code("UNAUTHENTICATED");
        assert_eq!(whoami(&srv, &key).await, 401, "{state}");
        let (status, _) = send_event(&srv, &key, "late", before).await;
        assert_eq!(status, 401, "{state}");
        srv.anonymous()
            .gql(ACCEPT, json!({ "t": invitation }))
            .await
            .expect_code("UNAUTHENTICATED");
        let invoice_doc = reqwest::Client::new()
            .get(format!("{}/v1/invoices/inv_x.html", srv.url))
            .bearer_auth(&access)
            .send()
            .await
            .unwrap();
        assert_eq!(invoice_doc.status().as_u16(), 401, "{state}");
    }
    // Another tenant is untouched.
    sign_in(&srv, "admin@comet-wireless.demo").await.unwrap();
}

#[tokio::test]
async fn credentials_follow_the_tenant_state_on_postgres() {
    credentials_follow_the_tenant_state(Backend::Postgres).await;
}

#[tokio::test]
async fn credentials_follow_the_tenant_state_on_embedded_sqlite() {
    credentials_follow_the_tenant_state(Backend::Sqlite).await;
}

async fn signing_out_revokes_access_tokens(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let me = "{ me { email } }";
    // Logout: the session's access token dies at once, its refresh token
    // too; another session of the same user lives on.
    let (access, refresh) = sign_in(&srv, "user@acme-fiber.demo").await.unwrap();
    let (other_device, other_refresh) = sign_in(&srv, "user@acme-fiber.demo").await.unwrap();
    let user = srv.anonymous().with_token(&access);
    user.gql(me, json!({})).await.data();
    user.gql(
        "mutation($t: String!) { logout(refreshToken: $t) }",
        json!({ "t": refresh }),
    )
    .await
    .data();
    user.gql(me, json!({})).await.expect_code("UNAUTHENTICATED");
    srv.anonymous()
        .gql(REFRESH, json!({ "t": refresh }))
        .await
        .expect_code("UNAUTHENTICATED");
    srv.anonymous()
        .with_token(&other_device)
        .gql(me, json!({}))
        .await
        .data();
    let renewed = srv
        .anonymous()
        .gql(REFRESH, json!({ "t": other_refresh }))
        .await;
    let renewed = renewed.data()["refreshToken"]["accessToken"]
        .as_str()
        .unwrap()
        .to_owned();
    srv.anonymous()
        .with_token(&renewed)
        .gql(me, json!({}))
        .await
        .data();

    // Password change: every access token of the user dies.
    let (access, _) = sign_in(&srv, "admin@acme-fiber.demo").await.unwrap();
    let (elsewhere, _) = sign_in(&srv, "admin@acme-fiber.demo").await.unwrap();
    let tenant_admin = srv.anonymous().with_token(&access);
    tenant_admin
        .gql(
            "mutation($c: String!) { changePassword(currentPassword: $c, newPassword: \"another-long-password\") }",
            json!({ "c": PASSWORD }),
        )
        .await
        .data();
    tenant_admin
        .gql(me, json!({}))
        .await
        .expect_code("UNAUTHENTICATED");
    srv.anonymous()
        .with_token(&elsewhere)
        .gql(me, json!({}))
        .await
        .expect_code("UNAUTHENTICATED");
}

#[tokio::test]
async fn signing_out_revokes_access_tokens_on_postgres() {
    signing_out_revokes_access_tokens(Backend::Postgres).await;
}

#[tokio::test]
async fn signing_out_revokes_access_tokens_on_embedded_sqlite() {
    signing_out_revokes_access_tokens(Backend::Sqlite).await;
}

async fn resellers_cannot_lift_a_suspension_for_non_payment(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let acme = tenant_id(&srv.app, "acme-fiber").await;
    let reseller = srv.login("reseller@demo.dotmac.dev").await;
    let reactivate = "mutation($id: ID!) { reactivateTenant(id: $id) { state } }";
    // Suspended by the reseller for its own reason: the reseller lifts it.
    reseller
        .gql(
            "mutation($id: ID!) { suspendTenant(id: $id, reason: \"audit\") { state } }",
            json!({ "id": acme }),
        )
        .await
        .data();
    reseller.gql(reactivate, json!({ "id": acme })).await.data();
    // Suspended by dunning: only the platform (or payment) lifts it.
    tenants::transition(
        &srv.app.directory,
        &RequestCtx::system("dunning"),
        &acme,
        TenantAction::Suspend,
        Some(NON_PAYMENT),
    )
    .await
    .unwrap();
    reseller
        .gql(reactivate, json!({ "id": acme }))
        .await
        .expect_code("FORBIDDEN");
    admin.gql(reactivate, json!({ "id": acme })).await.data();
}

#[tokio::test]
async fn resellers_cannot_lift_a_suspension_for_non_payment_on_postgres() {
    resellers_cannot_lift_a_suspension_for_non_payment(Backend::Postgres).await;
}

#[tokio::test]
async fn resellers_cannot_lift_a_suspension_for_non_payment_on_embedded_sqlite() {
    resellers_cannot_lift_a_suspension_for_non_payment(Backend::Sqlite).await;
}

//! Plugin licensing end to end, on both stores: the catalog, a trial once
//! per tenant and plugin, a paid licence taking over the trial's seats, an
//! effective-dated tier change, licence files the embedded verifier
//! accepts, revocation reaching the verifier, the last seat taken once
//! under a race, and the signing key read from OpenBao.

use std::collections::BTreeSet;

use dotmac_licence::{Error as LicenceError, Verifier};
use serde_json::{json, Value};

use crate::support::{Backend, Client, TestServer};

const PLUGIN: &str = r#"mutation($slug: String!) { createPlugin(input: {
    slug: $slug, name: "Radius Insights", description: "RADIUS analytics", category: "operations",
    tiers: [
      { tier: BASIC, features: [{ name: "customer_portal", enforcement: SOFT }, { name: "basic_billing", enforcement: SOFT }], monthlyFee: "19", currency: "USD" },
      { tier: PROFESSIONAL, features: [{ name: "advanced_analytics", enforcement: SOFT }, { name: "api_access", enforcement: HARD }, { name: "white_labeling", enforcement: ADVISORY }], monthlyFee: "49", currency: "USD" },
      { tier: ENTERPRISE, features: [{ name: "custom_integrations", enforcement: HARD }], monthlyFee: "149.50", currency: "USD" }
    ],
    versions: [{ version: "1.0.0", frameworkMin: "1.0.0" }, { version: "1.1.0", frameworkMin: "1.0.0", frameworkMax: "1.9.0" }]
  }) { id slug tiers { tier features { name enforcement } activationLimit } } }"#;

async fn acme(platform: &Client) -> String {
    let ans = platform
        .gql(
            "{ tenants(first: 10) { edges { node { id slug } } } }",
            json!({}),
        )
        .await;
    ans.data()["tenants"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["node"]["slug"] == "acme-fiber")
        .unwrap()["node"]["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn take(c: &Client, tenant: &str, plugin: &str, tier: &str, kind: &str) -> Value {
    c.gql(
        &format!("mutation($t: ID!, $p: String!) {{ takeLicence(input: {{ tenantId: $t, plugin: $p, tier: {tier}, kind: {kind} }}) {{ id tier kind state activationLimit endsAt }} }}"),
        json!({ "t": tenant, "p": plugin }),
    )
    .await
    .body
}

async fn file(c: &Client, id: &str) -> String {
    c.gql(
        "query($id: ID!) { licence(id: $id) { file } }",
        json!({ "id": id }),
    )
    .await
    .data()["licence"]["file"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn granted(v: &dotmac_licence::Verified) -> BTreeSet<&str> {
    v.payload.features.keys().map(String::as_str).collect()
}

async fn lifecycle(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let platform = srv.login("admin@demo.dotmac.dev").await;
    let a_admin = srv.login("admin@acme-fiber.demo").await;
    let tenant = acme(&platform).await;
    let created = platform
        .gql(PLUGIN, json!({ "slug": "radius-insights" }))
        .await;
    let tiers = &created.data()["createPlugin"]["tiers"];
    // Cumulative: professional grants basic's features too.
    let pro: Vec<&str> = tiers[1]["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(pro.len(), 5, "{pro:?}");
    assert!(pro.contains(&"customer_portal") && pro.contains(&"api_access"));
    assert_eq!(tiers[2]["features"].as_array().unwrap().len(), 6);
    // A slug taken, a feature repeated across tiers, a bad price: named.
    platform
        .gql(PLUGIN, json!({ "slug": "radius-insights" }))
        .await
        .expect_code("CONFLICT");
    let repeated = PLUGIN.replace("custom_integrations", "api_access");
    let bad = platform
        .gql(&repeated, json!({ "slug": "other-plugin" }))
        .await;
    bad.expect_code("VALIDATION");
    assert!(bad.body.to_string().contains("cumulative"), "{}", bad.body);
    let bad = platform
        .gql(
            &PLUGIN.replace("\"149.50\"", "\"-1\""),
            json!({ "slug": "other-plugin" }),
        )
        .await;
    bad.expect_code("VALIDATION");
    assert!(bad.body.to_string().contains("monthlyFee"), "{}", bad.body);

    // Replaced whole by the platform: a new version, the old ones kept.
    let id = created.data()["createPlugin"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = PLUGIN
        .replace("mutation($slug: String!) { createPlugin(input: {", "mutation($slug: String!, $id: ID!) { updatePlugin(id: $id, input: {")
        .replace("Radius Insights", "Radius Insights 2")
        .replace(
            r#"{ version: "1.0.0", frameworkMin: "1.0.0" },"#,
            r#"{ version: "1.0.0", frameworkMin: "1.0.0" }, { version: "1.2.0", frameworkMin: "1.1.0" },"#,
        )
        .replace("activationLimit } } }", "activationLimit } name versions { version frameworkMin } } }");
    let updated = platform
        .gql(&update, json!({ "slug": "radius-insights", "id": id }))
        .await;
    let versions = updated.data()["updatePlugin"]["versions"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(versions.len(), 3, "{versions:?}");
    assert_eq!(updated.data()["updatePlugin"]["name"], "Radius Insights 2");
    a_admin
        .gql(&update, json!({ "slug": "radius-insights", "id": id }))
        .await
        .expect_code("FORBIDDEN");

    // A trial, once.
    let trial = take(&a_admin, &tenant, "radius-insights", "BASIC", "TRIAL").await;
    let trial_id = trial["data"]["takeLicence"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        trial["data"]["takeLicence"]["endsAt"].is_string(),
        "{trial}"
    );
    let seat = a_admin
        .gql(
            "mutation($id: ID!) { activateLicence(id: $id, instanceId: \"ins-a1\") { instanceId } }",
            json!({ "id": trial_id }),
        )
        .await;
    assert_eq!(seat.data()["activateLicence"]["instanceId"], "ins-a1");
    let again = take(&a_admin, &tenant, "radius-insights", "BASIC", "TRIAL").await;
    assert_eq!(
        again["errors"][0]["extensions"]["code"], "CONFLICT",
        "{again}"
    );

    // Paid: the trial ends, its seat carries over.
    let paid = take(&a_admin, &tenant, "radius-insights", "PROFESSIONAL", "PAID").await;
    let paid_id = paid["data"]["takeLicence"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(paid["data"]["takeLicence"]["activationLimit"], 3, "{paid}");
    let trial_now = a_admin
        .gql(
            "query($id: ID!) { licence(id: $id) { state } }",
            json!({ "id": trial_id }),
        )
        .await;
    assert_eq!(trial_now.data()["licence"]["state"], "CANCELLED");
    let twice = take(&a_admin, &tenant, "radius-insights", "BASIC", "PAID").await;
    assert_eq!(
        twice["errors"][0]["extensions"]["code"], "CONFLICT",
        "{twice}"
    );

    // Its file verifies offline for the tenant and its instance.
    let doc = file(&a_admin, &paid_id).await;
    let now = srv.clock.now().timestamp();
    let verifier = Verifier::new(0);
    let v = verifier
        .verify(doc.as_bytes(), &tenant, Some("ins-a1"), now)
        .unwrap();
    assert_eq!(v.payload.licence_id, paid_id);
    assert_eq!(granted(&v).len(), 5);
    assert_eq!(v.payload.plugins[0].tier, "professional");
    assert!(!v.payload.plugins[0].trial);

    // An effective-dated tier change: same licence, new features, no gap.
    let changed = a_admin
        .gql(
            "mutation($id: ID!) { changeLicenceTier(id: $id, tier: ENTERPRISE) { id tier activationLimit } }",
            json!({ "id": paid_id }),
        )
        .await;
    assert_eq!(changed.data()["changeLicenceTier"]["id"], json!(paid_id));
    assert_eq!(changed.data()["changeLicenceTier"]["activationLimit"], 10);
    let v = verifier
        .verify(
            file(&a_admin, &paid_id).await.as_bytes(),
            &tenant,
            Some("ins-a1"),
            now,
        )
        .unwrap();
    assert!(granted(&v).contains("custom_integrations"));
    let same = a_admin
        .gql(
            "mutation($id: ID!) { changeLicenceTier(id: $id, tier: ENTERPRISE) { id } }",
            json!({ "id": paid_id }),
        )
        .await;
    same.expect_code("CONFLICT");

    // Revoked: on the list, and a verifier holding the list refuses the file.
    let a_user = srv.login("user@acme-fiber.demo").await;
    let ans = a_admin
        .gql(
            "mutation($id: ID!) { revokeLicence(id: $id, reason: \"chargeback\") { state } }",
            json!({ "id": paid_id }),
        )
        .await;
    ans.expect_code("FORBIDDEN");
    let revoked = platform
        .gql(
            "mutation($id: ID!) { revokeLicence(id: $id, reason: \"chargeback\") { state } }",
            json!({ "id": paid_id }),
        )
        .await;
    assert_eq!(revoked.data()["revokeLicence"]["state"], "REVOKED");
    let list = a_user
        .http
        .get(format!("{}/v1/licences/revocations", srv.url))
        .bearer_auth(a_user.token.as_deref().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(list.status(), 200);
    let list = list.text().await.unwrap();
    assert_eq!(verifier.accept_revocations(list.as_bytes()).unwrap(), 1);
    assert_eq!(
        verifier.verify(doc.as_bytes(), &tenant, None, now),
        Err(LicenceError::Revoked { sequence: 1 })
    );
    // A revoked licence has no file any more.
    a_admin
        .gql(
            "query($id: ID!) { licence(id: $id) { file } }",
            json!({ "id": paid_id }),
        )
        .await
        .expect_code("CONFLICT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licences_live_and_are_verified_offline_on_sqlite() {
    lifecycle(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licences_live_and_are_verified_offline_on_postgres() {
    lifecycle(Backend::Postgres).await;
}

/// N activations at once for the last seat: exactly one wins.
async fn last_seat(backend: Backend) {
    let srv = TestServer::start(backend).await;
    let platform = srv.login("admin@demo.dotmac.dev").await;
    let tenant = acme(&platform).await;
    platform
        .gql(PLUGIN, json!({ "slug": "seat-race" }))
        .await
        .data();
    let paid = take(&platform, &tenant, "seat-race", "PROFESSIONAL", "PAID").await;
    let id = paid["data"]["takeLicence"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Two of three seats taken first.
    for ins in ["ins-1", "ins-2"] {
        platform
            .gql(
                "mutation($id: ID!, $i: String!) { activateLicence(id: $id, instanceId: $i) { instanceId } }",
                json!({ "id": id, "i": ins }),
            )
            .await
            .data();
    }
    let racers = 8;
    let answers = futures::future::join_all((0..racers).map(|n| {
        let c = platform.clone();
        let id = id.clone();
        async move {
            c.gql(
                "mutation($id: ID!, $i: String!) { activateLicence(id: $id, instanceId: $i) { instanceId } }",
                json!({ "id": id, "i": format!("racer-{n}") }),
            )
            .await
        }
    }))
    .await;
    let won = answers.iter().filter(|a| a.errors().is_empty()).count();
    assert_eq!(won, 1, "{answers:#?}");
    for a in answers.iter().filter(|a| !a.errors().is_empty()) {
        a.expect_code("CONFLICT");
        assert!(
            a.body.to_string().contains("every seat is taken"),
            "{}",
            a.body
        );
    }
    let seats = platform
        .gql(
            "query($id: ID!) { licence(id: $id) { seats { instanceId } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        seats.data()["licence"]["seats"].as_array().unwrap().len(),
        3
    );
    // A seat freed is a seat to take.
    let freed = platform
        .gql(
            "mutation($id: ID!) { deactivateLicence(id: $id, instanceId: \"ins-1\") }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(freed.data()["deactivateLicence"], true);
    platform
        .gql(
            "mutation($id: ID!) { activateLicence(id: $id, instanceId: \"late\") { instanceId } }",
            json!({ "id": id }),
        )
        .await
        .data();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_seat_is_taken_once_on_sqlite() {
    last_seat(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_seat_is_taken_once_on_postgres() {
    last_seat(Backend::Postgres).await;
}

/// In production the key is the one in OpenBao (here: the dev seed put
/// there, as `dotmac licence keygen` puts a new one); a missing key is an
/// answer naming what to do, not a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn licence_files_are_signed_with_the_key_in_openbao() {
    use dotmac_orchestrator::secrets::openbao::OpenBao;
    use dotmac_orchestrator::secrets::SecretValue;
    let settings = dotmac_orchestrator::testkit::openbao_settings();
    // A mount of this test's own, so that no other run's key is in the way.
    let mount = format!("lic{}", rand::random::<u32>());
    let vault = OpenBao::new(dotmac_orchestrator::secrets::openbao::OpenBaoSettings {
        mount: mount.clone(),
        ..settings.clone()
    })
    .unwrap();
    let http = reqwest::Client::new();
    http.post(format!("{}/v1/sys/mounts/{mount}", settings.address))
        .header("X-Vault-Token", settings.token.expose())
        .json(&json!({ "type": "kv", "options": { "version": "2" } }))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let srv = TestServer::start_with(Backend::Postgres, |c| {
        c.vault_addr = settings.address.clone();
        c.vault_token = settings.token.expose().to_owned();
        c.orchestrator.vault_mount = mount.clone();
    })
    .await;
    let platform = srv.login("admin@demo.dotmac.dev").await;
    let tenant = acme(&platform).await;
    platform
        .gql(PLUGIN, json!({ "slug": "vault-signed" }))
        .await
        .data();
    let paid = take(&platform, &tenant, "vault-signed", "BASIC", "PAID").await;
    let id = paid["data"]["takeLicence"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let missing = platform
        .gql(
            "query($id: ID!) { licence(id: $id) { file } }",
            json!({ "id": id }),
        )
        .await;
    missing.expect_code("UNAVAILABLE");
    assert!(
        missing.body.to_string().contains("dotmac licence keygen"),
        "{}",
        missing.body
    );
    vault
        .put_platform_secret(
            "licence-signing",
            &std::collections::BTreeMap::from([
                (
                    "key_id".to_owned(),
                    SecretValue::new(dotmac_licence::keys::DEV_KEY_ID.into()),
                ),
                (
                    "seed".to_owned(),
                    SecretValue::new(hex::encode(dotmac_licence::keys::DEV_SEED)),
                ),
            ]),
        )
        .await
        .unwrap();
    let doc = file(&platform, &id).await;
    let v = Verifier::new(0)
        .verify(doc.as_bytes(), &tenant, None, srv.clock.now().timestamp())
        .unwrap();
    assert_eq!(v.key_id, dotmac_licence::keys::DEV_KEY_ID);
}

/// GET /v1/entitlements with the instance's key: what its live licences
/// grant, signed; the version (and its weak ETag) rises with every change,
/// and the current one answers 304.
async fn entitlements(backend: Backend) {
    use dotmac_licence::{Checker, Source};
    let srv = TestServer::start(backend).await;
    let platform = srv.login("admin@demo.dotmac.dev").await;
    let tenant = acme(&platform).await;
    platform
        .gql(PLUGIN, json!({ "slug": "entitled" }))
        .await
        .data();
    let key = platform
        .gql(
            "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [LICENSE_READ]) { secret } }",
            json!({ "t": tenant }),
        )
        .await;
    let key = key.data()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let fetch = |etag: Option<String>| {
        let req = http
            .get(format!("{}/v1/entitlements", srv.url))
            .bearer_auth(&key);
        let req = match etag {
            Some(t) => req.header("if-none-match", t),
            None => req,
        };
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let etag = r
                .headers()
                .get("etag")
                .map(|v| v.to_str().unwrap().to_owned());
            (status, etag, r.text().await.unwrap())
        }
    };
    let checker = Checker::new(&tenant, None);
    let (status, etag0, doc) = fetch(None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(checker.install(doc.as_bytes()).unwrap(), 0);
    assert!(!checker.enabled("api_access").allowed);

    let paid = take(&platform, &tenant, "entitled", "PROFESSIONAL", "PAID").await;
    let id = paid["data"]["takeLicence"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, etag1, doc) = fetch(etag0.clone()).await;
    assert_ne!(etag1, etag0);
    assert_eq!(checker.install(doc.as_bytes()).unwrap(), 1);
    let check = checker.enabled("api_access");
    assert!(check.allowed && check.source == Some(Source::Live));
    assert!(!checker.enabled("custom_integrations").allowed);
    let (status, etag_same, body) = fetch(etag1.clone()).await;
    assert_eq!((status, body.as_str()), (304, ""), "the current version");
    assert_eq!(etag_same, etag1);

    platform
        .gql(
            "mutation($id: ID!) { changeLicenceTier(id: $id, tier: ENTERPRISE) { id } }",
            json!({ "id": id }),
        )
        .await
        .data();
    let (_, _, doc) = fetch(etag1).await;
    assert_eq!(checker.install(doc.as_bytes()).unwrap(), 2);
    assert!(checker.enabled("custom_integrations").allowed);
    platform
        .gql(
            "mutation($id: ID!) { cancelLicence(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await
        .data();
    let (_, _, doc) = fetch(None).await;
    assert_eq!(checker.install(doc.as_bytes()).unwrap(), 3);
    assert!(!checker.enabled("api_access").allowed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlements_follow_every_licence_change_on_sqlite() {
    entitlements(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entitlements_follow_every_licence_change_on_postgres() {
    entitlements(Backend::Postgres).await;
}

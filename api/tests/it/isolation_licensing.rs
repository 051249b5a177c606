//! Isolation of licensing: the catalog is everyone's to read and the
//! platform's to write; licences, their seats and files are the tenant's
//! (its reseller's, the platform's); the `/v1/licences` routes answer an
//! API key for its own tenant's licences only.

use serde_json::{json, Value};

use super::{assert_denied, assert_no_leak, World};
use crate::support::Client;

/// A plugin, and a licence for each side: A's taken by its admin, B's
/// (suspended in the demo, so no one may take one now) written as a
/// licence taken before the suspension.
pub struct LicensingIds {
    pub plugin: String,
    pub lic_a: String,
    pub lic_b: String,
    /// A `license:read` key of A, for the `/v1` routes.
    pub a_key: String,
}

const PLUGIN: &str = r#"mutation { createPlugin(input: {
    slug: "iso-plugin", name: "Isolation Plugin", category: "test",
    tiers: [
      { tier: BASIC, features: [{ name: "customer_portal", enforcement: SOFT }], monthlyFee: "10", currency: "USD" },
      { tier: PROFESSIONAL, features: [{ name: "api_access", enforcement: HARD }], monthlyFee: "20", currency: "USD" }
    ] }) { id } }"#;

pub async fn fixture(w: &World) -> &LicensingIds {
    w.licensing
        .get_or_init(|| async {
            let plugin = w.platform.gql(PLUGIN, json!({})).await.data()["createPlugin"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let taken = w
                .a_admin
                .gql(
                    "mutation($t: ID!) { takeLicence(input: { tenantId: $t, plugin: \"iso-plugin\", tier: PROFESSIONAL, kind: PAID }) { id } }",
                    json!({ "t": w.a.tenant_id }),
                )
                .await;
            let lic_a = taken.data()["takeLicence"]["id"].as_str().unwrap().to_owned();
            let lic_b = b_licence(w, &plugin).await;
            let key = w
                .platform
                .gql(
                    "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [LICENSE_READ]) { secret } }",
                    json!({ "t": w.a.tenant_id }),
                )
                .await;
            LicensingIds {
                plugin,
                lic_a,
                lic_b,
                a_key: key.data()["createApiKey"]["secret"].as_str().unwrap().to_owned(),
            }
        })
        .await
}

async fn b_licence(w: &World, plugin: &str) -> String {
    use dotmac_api::store::licence_rows::{self, LicenceRow};
    use dotmac_schema::{LicenceId, LicenceKind, LicenceState, PluginTier, Scope};
    let app = &w.srv.app;
    let now = app.clock.now();
    let tx = app.store.begin(&Scope::All).await.unwrap();
    let row = licence_rows::insert(
        &tx,
        LicenceRow {
            id: LicenceId::new().to_string(),
            tenant_id: w.b.tenant_id.clone(),
            plugin_id: plugin.to_owned(),
            tier: PluginTier::Basic,
            kind: LicenceKind::Paid,
            state: LicenceState::Active,
            activation_limit: 1,
            starts_at: now,
            ends_at: None,
            created_at: now,
            updated_at: now,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    row.id
}

fn not_platform(w: &World) -> [(&'static str, &Client); 6] {
    [
        ("support", &w.support),
        ("reseller_admin of R", &w.reseller),
        ("tenant_admin of A", &w.a_admin),
        ("tenant_user of A", &w.a_user),
        ("tenant_admin of B", &w.b_admin),
        ("tenant_user of B", &w.b_user),
    ]
}

pub async fn query_case(w: &World, field: &str) {
    let ids = fixture(w).await;
    match field {
        "plugins" | "plugin" => {
            let doc = if field == "plugins" {
                "{ plugins(first: 50) { edges { node { id slug tiers { tier features { name } } } } } }"
            } else {
                "{ plugin(id: \"iso-plugin\") { id slug tiers { tier } } }"
            };
            // Everyone signed in reads the catalog; nothing of a tenant is in it.
            for (who, c) in not_platform(w) {
                let ans = c.gql(doc, json!({})).await;
                assert!(ans.errors().is_empty(), "{who}: {}", ans.body);
                assert!(ans.body.to_string().contains(&ids.plugin), "{who}");
                assert_no_leak(who, field, &ans, &w.a.secrets());
                assert_no_leak(who, field, &ans, &w.b.secrets());
            }
            let anon = w.srv.anonymous().gql(doc, json!({})).await;
            assert_denied("anonymous", field, &anon, &["UNAUTHENTICATED"], &[]);
        }
        "licences" => {
            let doc = "query($t: ID) { licences(tenantId: $t, first: 100) { edges { node { id tenantId tier } } } }";
            for f in w.foreigners() {
                let theirs = if f.target.tenant_id == w.a.tenant_id {
                    &ids.lic_a
                } else {
                    &ids.lic_b
                };
                for t in [Value::Null, json!(f.target.tenant_id)] {
                    let ans = f.client.gql(doc, json!({ "t": t })).await;
                    assert!(
                        !ans.body.to_string().contains(theirs.as_str()),
                        "{}: saw {theirs} in {}",
                        f.who,
                        ans.body
                    );
                }
            }
            let own = w.reseller.gql(doc, json!({ "t": Value::Null })).await;
            let text = own.body.to_string();
            assert!(
                text.contains(&ids.lic_a) && !text.contains(&ids.lic_b),
                "{text}"
            );
            let all = w.platform.gql(doc, json!({ "t": Value::Null })).await;
            let text = all.body.to_string();
            assert!(
                text.contains(&ids.lic_a) && text.contains(&ids.lic_b),
                "{text}"
            );
        }
        _ => {
            let doc = "query($id: ID!) { licence(id: $id) { id tier seats { instanceId } file plugin { slug } } }";
            for f in w.foreigners() {
                let theirs = if f.target.tenant_id == w.a.tenant_id {
                    &ids.lic_a
                } else {
                    &ids.lic_b
                };
                let ans = f.client.gql(doc, json!({ "id": theirs })).await;
                assert_denied(
                    f.who,
                    field,
                    &ans,
                    &["NOT_FOUND"],
                    std::slice::from_ref(theirs),
                );
            }
            let own = w.a_user.gql(doc, json!({ "id": ids.lic_a })).await;
            assert!(
                own.data()["licence"]["file"]
                    .as_str()
                    .unwrap()
                    .starts_with("dmlic1."),
                "{}",
                own.body
            );
            rest_case(w, ids).await;
        }
    }
}

/// The `/v1/licences` routes: an API key sees its own tenant's licences
/// only, and needs `license:read`.
async fn rest_case(w: &World, ids: &LicensingIds) {
    let http = reqwest::Client::new();
    let get = |path: String, key: String| {
        let http = http.clone();
        let url = format!("{}{path}", w.srv.url);
        async move {
            let r = http.get(url).bearer_auth(key).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, body) = get(format!("/v1/licences/{}", ids.lic_a), ids.a_key.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("dmlic1."));
    let (status, body) = get(format!("/v1/licences/{}", ids.lic_b), ids.a_key.clone()).await;
    assert_eq!(status, 404, "A's key on B's licence: {body}");
    assert!(!body.contains(&w.b.tenant_id));
    let post = http
        .post(format!(
            "{}/v1/licences/{}/activations",
            w.srv.url, ids.lic_b
        ))
        .bearer_auth(&ids.a_key)
        .json(&json!({ "instanceId": "intruder" }))
        .send()
        .await
        .unwrap();
    assert_eq!(post.status().as_u16(), 404);
    let del = http
        .delete(format!(
            "{}/v1/licences/{}/activations/intruder",
            w.srv.url, ids.lic_b
        ))
        .bearer_auth(&ids.a_key)
        .send()
        .await
        .unwrap();
    assert_eq!(del.status().as_u16(), 404);
    // A key without license:read is refused, even for its own tenant.
    let usage_key = w
        .platform
        .gql(
            "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE]) { secret } }",
            json!({ "t": w.a.tenant_id }),
        )
        .await;
    let usage_key = usage_key.data()["createApiKey"]["secret"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = get(format!("/v1/licences/{}", ids.lic_a), usage_key.clone()).await;
    assert_eq!(status, 403);
    let (status, _) = get("/v1/licences/revocations".into(), usage_key.clone()).await;
    assert_eq!(status, 403);
    // Entitlements: its own tenant's, never B's.
    let (status, own) = get("/v1/entitlements".into(), ids.a_key.clone()).await;
    assert_eq!(status, 200, "{own}");
    assert!(own.starts_with("dment1."));
    let (status, body) = get(
        format!("/v1/entitlements?tenantId={}", w.b.tenant_id),
        ids.a_key.clone(),
    )
    .await;
    assert_eq!(status, 404, "A's key asking for B's entitlements: {body}");
    let (status, _) = get("/v1/entitlements".into(), usage_key.clone()).await;
    assert_eq!(status, 403);
    let (status, list) = get("/v1/licences/revocations".into(), ids.a_key.clone()).await;
    assert_eq!(status, 200);
    assert!(list.starts_with("dmrev1."), "{list}");
    // The instance takes its seat with its key, and gets a file naming it.
    let seat = http
        .post(format!(
            "{}/v1/licences/{}/activations",
            w.srv.url, ids.lic_a
        ))
        .bearer_auth(&ids.a_key)
        .json(&json!({ "instanceId": "acme-edge-1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(seat.status().as_u16(), 201);
    let seat: Value = seat.json().await.unwrap();
    let v = dotmac_licence::Verifier::new(0)
        .verify(
            seat["file"].as_str().unwrap().as_bytes(),
            &w.a.tenant_id,
            Some("acme-edge-1"),
            w.srv.app.clock.now().timestamp(),
        )
        .unwrap();
    assert!(v.payload.features.contains_key("api_access"));
}

pub async fn mutation_case(w: &World, field: &str) {
    let ids = fixture(w).await;
    let lic = |target_is_a: bool| if target_is_a { &ids.lic_a } else { &ids.lic_b };
    match field {
        "createPlugin" | "updatePlugin" => {
            let doc = if field == "createPlugin" {
                PLUGIN.replace("iso-plugin", "iso-plugin-2")
            } else {
                format!(
                    "mutation {{ updatePlugin(id: \"{}\", input: {{ slug: \"iso-plugin\", name: \"Renamed\", category: \"test\", tiers: [{{ tier: BASIC, features: [], monthlyFee: \"1\", currency: \"USD\" }}] }}) {{ id }} }}",
                    ids.plugin
                )
            };
            for (who, c) in not_platform(w) {
                let ans = c.gql(&doc, json!({})).await;
                assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
            }
            if field == "updatePlugin" {
                // Removing a tier licences are held at is refused.
                let ans = w.platform.gql(&doc, json!({})).await;
                ans.expect_code("CONFLICT");
            }
        }
        "takeLicence" => {
            let doc = "mutation($t: ID!) { takeLicence(input: { tenantId: $t, plugin: \"iso-plugin\", tier: BASIC, kind: TRIAL }) { id } }";
            for f in w.foreigners() {
                let ans = f.client.gql(doc, json!({ "t": f.target.tenant_id })).await;
                assert_denied(
                    f.who,
                    field,
                    &ans,
                    &["NOT_FOUND", "FORBIDDEN"],
                    &f.target.secrets(),
                );
            }
            let ans = w.support.gql(doc, json!({ "t": w.a.tenant_id })).await;
            assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
        }
        "revokeLicence" => {
            let doc = "mutation($id: ID!) { revokeLicence(id: $id, reason: \"isolation\") { id } }";
            for (who, c) in not_platform(w) {
                for id in [&ids.lic_a, &ids.lic_b] {
                    let ans = c.gql(doc, json!({ "id": id })).await;
                    assert_denied(who, field, &ans, &["FORBIDDEN", "NOT_FOUND"], &[]);
                }
            }
        }
        _ => {
            let doc = match field {
                "changeLicenceTier" => "mutation($id: ID!) { changeLicenceTier(id: $id, tier: BASIC) { id } }",
                "cancelLicence" => "mutation($id: ID!) { cancelLicence(id: $id) { id } }",
                "activateLicence" => "mutation($id: ID!) { activateLicence(id: $id, instanceId: \"intruder\") { instanceId } }",
                _ => "mutation($id: ID!) { deactivateLicence(id: $id, instanceId: \"intruder\") }",
            };
            for f in w.foreigners() {
                let theirs = lic(f.target.tenant_id == w.a.tenant_id);
                let ans = f.client.gql(doc, json!({ "id": theirs })).await;
                assert_denied(
                    f.who,
                    field,
                    &ans,
                    &["NOT_FOUND", "FORBIDDEN"],
                    std::slice::from_ref(theirs),
                );
            }
            let ans = w.support.gql(doc, json!({ "id": ids.lic_a })).await;
            assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
            let ans = w.a_user.gql(doc, json!({ "id": ids.lic_a })).await;
            assert_denied("tenant_user of A", field, &ans, &["FORBIDDEN"], &[]);
        }
    }
}

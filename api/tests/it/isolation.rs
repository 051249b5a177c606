//! The isolation suite, driven by the schema: every Query, Mutation and
//! Subscription field in the SDL is run by principals of tenant A, tenant B,
//! reseller R (owning A only), tenant users vs admins, support and platform
//! admin. Nothing may cross scope (NOT_FOUND, no data), read-only roles may
//! not mutate, and a field without a case here fails the suite.

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{Answer, Backend, Client, TestServer, PASSWORD};

#[path = "isolation_billing.rs"]
mod billing;
#[path = "isolation_instances.rs"]
mod instances;
#[path = "isolation_licensing.rs"]
mod licensing;

/// The root fields of one operation type, read from the SDL.
pub fn root_fields(sdl: &str, type_name: &str) -> Vec<String> {
    let header = format!("type {type_name} {{");
    let Some(start) = sdl.find(&header) else {
        return Vec::new();
    };
    let body = &sdl[start + header.len()..];
    let body = &body[..body.find("\n}").unwrap_or(body.len())];
    let mut in_doc = false;
    let mut out = Vec::new();
    for line in body.lines() {
        let t = line.trim();
        if t.starts_with("\"\"\"") {
            // A one-line docstring opens and closes on the same line.
            if !(t.len() > 3 && t.ends_with("\"\"\"")) {
                in_doc = !in_doc;
            }
            continue;
        }
        if in_doc || !line.starts_with('\t') || line.starts_with("\t\t") {
            continue;
        }
        let name: String = t
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[derive(Clone)]
struct Side {
    tenant_id: String,
    slug: String,
    name: String,
    api_key_id: String,
    emails: Vec<String>,
}

impl Side {
    fn secrets(&self) -> Vec<String> {
        let mut s = vec![
            self.tenant_id.clone(),
            self.slug.clone(),
            self.name.clone(),
            self.api_key_id.clone(),
        ];
        s.extend(self.emails.iter().cloned());
        s
    }
}

struct World {
    srv: TestServer,
    platform: Client,
    support: Client,
    reseller: Client,
    a_admin: Client,
    a_user: Client,
    b_admin: Client,
    b_user: Client,
    a: Side,
    b: Side,
    r_id: String,
    r2_id: String,
    r2_name: String,
    billing: billing::BillingIds,
    backend: Backend,
    /// A world with a cluster target, built by the first case that needs it.
    instances: tokio::sync::OnceCell<instances::InstanceWorld>,
    /// A plugin and a licence per side, made by the first case that needs them.
    licensing: tokio::sync::OnceCell<licensing::LicensingIds>,
}

/// A principal and the side whose data it must never see.
struct Foreign<'a> {
    who: &'static str,
    client: &'a Client,
    target: &'a Side,
}

impl World {
    async fn build(backend: Backend) -> World {
        let srv = TestServer::start(backend).await;
        let platform = srv.login("admin@demo.dotmac.dev").await;
        let support = srv.login("support@demo.dotmac.dev").await;
        let reseller = srv.login("reseller@demo.dotmac.dev").await;
        let a_admin = srv.login("admin@acme-fiber.demo").await;
        let a_user = srv.login("user@acme-fiber.demo").await;
        let b_admin = srv.login("admin@bolt-broadband.demo").await;
        let b_user = srv.login("user@bolt-broadband.demo").await;
        let list = platform
            .gql(
                "{ tenants(first: 10) { edges { node { id slug name resellerId } } } }",
                json!({}),
            )
            .await;
        let node = |slug: &str| {
            list.data()["tenants"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["node"].clone())
                .find(|n| n["slug"] == slug)
                .unwrap()
        };
        let (a_node, b_node) = (node("acme-fiber"), node("bolt-broadband"));
        let r_id = a_node["resellerId"].as_str().unwrap().to_owned();
        let side = |n: &Value, slug: &str| {
            let n = n.clone();
            let slug = slug.to_owned();
            let platform = platform.clone();
            async move {
                let key = platform
                    .gql(
                        "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE]) { apiKey { id } secret } }",
                        json!({ "t": n["id"] }),
                    )
                    .await;
                Side {
                    tenant_id: n["id"].as_str().unwrap().to_owned(),
                    slug: slug.clone(),
                    name: n["name"].as_str().unwrap().to_owned(),
                    api_key_id: key.data()["createApiKey"]["apiKey"]["id"]
                        .as_str()
                        .unwrap()
                        .to_owned(),
                    emails: vec![format!("admin@{slug}.demo"), format!("user@{slug}.demo")],
                }
            }
        };
        let a = side(&a_node, "acme-fiber").await;
        let b = side(&b_node, "bolt-broadband").await;
        let r2_name = "Second Reseller Zeta".to_owned();
        let r2 = platform
            .gql(
                "mutation($n: String!) { createReseller(input: { name: $n, tier: SILVER }) { id } }",
                json!({ "n": r2_name }),
            )
            .await;
        let r2_id = r2.data()["createReseller"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let billing = billing::fixture(&srv.app, &platform, &a, &b).await;
        World {
            billing,
            backend,
            instances: tokio::sync::OnceCell::new(),
            licensing: tokio::sync::OnceCell::new(),
            srv,
            platform,
            support,
            reseller,
            a_admin,
            a_user,
            b_admin,
            b_user,
            a,
            b,
            r_id,
            r2_id,
            r2_name,
        }
    }

    /// Principals paired with a tenant outside their scope.
    fn foreigners(&self) -> Vec<Foreign<'_>> {
        vec![
            Foreign {
                who: "tenant_admin of A",
                client: &self.a_admin,
                target: &self.b,
            },
            Foreign {
                who: "tenant_user of A",
                client: &self.a_user,
                target: &self.b,
            },
            Foreign {
                who: "reseller_admin of R",
                client: &self.reseller,
                target: &self.b,
            },
            Foreign {
                who: "tenant_admin of B",
                client: &self.b_admin,
                target: &self.a,
            },
            Foreign {
                who: "tenant_user of B",
                client: &self.b_user,
                target: &self.a,
            },
        ]
    }

    /// Every principal of the world, by role.
    fn everyone(&self) -> Vec<(&'static str, &Client)> {
        vec![
            ("platform_admin", &self.platform),
            ("support", &self.support),
            ("reseller_admin", &self.reseller),
            ("tenant_admin of A", &self.a_admin),
            ("tenant_user of A", &self.a_user),
            ("tenant_admin of B", &self.b_admin),
            ("tenant_user of B", &self.b_user),
        ]
    }

    /// A new meter made by the platform admin; returns its id.
    async fn meter(&self, slug: &str) -> String {
        let ans = self
            .platform
            .gql(
                "mutation($s: String!) { createMeter(input: { slug: $s, name: \"Session bytes\", eventType: \"session.bytes\", aggregation: SUM, valuePath: \"bytes\", groupBy: [\"region\"], window: HOUR }) { id } }",
                json!({ "s": slug }),
            )
            .await;
        ans.data()["createMeter"]["id"].as_str().unwrap().to_owned()
    }

    /// A new tenant outside every non-platform principal's scope, in `state`
    /// reached through the legal path.
    async fn fresh_tenant(&self, path: &[&str]) -> Side {
        let name = format!("Target {}", uuid::Uuid::new_v4().simple());
        let created = self
            .platform
            .gql(
                "mutation($n: String!) { createTenant(input: { name: $n }) { id slug name } }",
                json!({ "n": name }),
            )
            .await;
        let t = created.data()["createTenant"].clone();
        let id = t["id"].as_str().unwrap().to_owned();
        for m in path {
            let doc =
                format!("mutation($id: ID!) {{ {m}(id: $id, reason: \"setup\") {{ state }} }}");
            self.platform.gql(&doc, json!({ "id": id })).await.data();
        }
        Side {
            tenant_id: id,
            slug: t["slug"].as_str().unwrap().to_owned(),
            name: t["name"].as_str().unwrap().to_owned(),
            api_key_id: String::new(),
            emails: Vec::new(),
        }
    }

    async fn tenant_state(&self, id: &str) -> Value {
        self.platform
            .gql(
                "query($id: ID!) { tenant(id: $id) { state name apiKeyCount userCount taxJurisdiction } }",
                json!({ "id": id }),
            )
            .await
            .data()["tenant"]
            .clone()
    }
}

/// The answer carries none of `secrets` anywhere (data or errors).
fn assert_no_leak(who: &str, field: &str, ans: &Answer, secrets: &[String]) {
    let text = ans.body.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        assert!(
            !text.contains(s.as_str()),
            "{field}: {who} saw {s:?} in {text}"
        );
    }
}

/// Denied: an error with one of `codes`, no data, no leak.
fn assert_denied(who: &str, field: &str, ans: &Answer, codes: &[&str], secrets: &[String]) {
    let code = ans
        .code()
        .unwrap_or_else(|| panic!("{field}: {who} was not denied: {}", ans.body));
    assert!(
        codes.contains(&code.as_str()),
        "{field}: {who} got {code}, expected one of {codes:?}: {}",
        ans.body
    );
    assert!(
        ans.body["data"].is_null() || ans.body["data"][field].is_null(),
        "{field}: {who} got data {}",
        ans.body
    );
    assert_no_leak(who, field, ans, secrets);
}

/// Every principal outside the target's scope runs `doc`: each is denied
/// (NOT_FOUND, or FORBIDDEN for a role that may not do it at all) and sees
/// none of `secrets`.
async fn assert_foreigners_denied(
    w: &World,
    field: &str,
    doc: &str,
    vars: Value,
    secrets: &[String],
) {
    for f in w.foreigners() {
        let ans = f.client.gql(doc, vars.clone()).await;
        assert_denied(f.who, field, &ans, &["NOT_FOUND", "FORBIDDEN"], secrets);
    }
}

async fn query_case(w: &World, field: &str) {
    match field {
        "me" => {
            for f in w.foreigners() {
                let ans = f
                    .client
                    .gql("{ me { id email tenantId resellerId role } }", json!({}))
                    .await;
                assert!(ans.errors().is_empty(), "{}", ans.body);
                assert_no_leak(f.who, field, &ans, &f.target.secrets());
            }
            let ans = w.platform.gql("{ me { role } }", json!({})).await;
            assert_eq!(ans.data()["me"]["role"], "PLATFORM_ADMIN");
        }
        "tenant" => {
            let doc = "query($id: ID!) { tenant(id: $id) { id name slug reseller { id name } userCount apiKeyCount } }";
            for f in w.foreigners() {
                let ans = f.client.gql(doc, json!({ "id": f.target.tenant_id })).await;
                assert_denied(f.who, field, &ans, &["NOT_FOUND"], &f.target.secrets());
            }
            for (who, c) in [("support", &w.support), ("platform", &w.platform)] {
                let ans = c.gql(doc, json!({ "id": w.b.tenant_id })).await;
                assert_eq!(ans.data()["tenant"]["slug"], w.b.slug, "{who}");
            }
            let own = w.reseller.gql(doc, json!({ "id": w.a.tenant_id })).await;
            assert_eq!(own.data()["tenant"]["slug"], w.a.slug);
            // Its nested instance, where tenants have instances.
            instances::instance_field_case(w).await;
        }
        "tenants" => {
            let doc = "query($s: String) { tenants(first: 100, filter: { search: $s }) { edges { node { id name slug reseller { id } userCount apiKeyCount } } } }";
            for f in w.foreigners() {
                for search in [Value::Null, json!(f.target.name)] {
                    let ans = f.client.gql(doc, json!({ "s": search })).await;
                    assert!(ans.errors().is_empty(), "{}", ans.body);
                    assert_no_leak(f.who, field, &ans, &f.target.secrets());
                }
            }
            let all = w.support.gql(doc, json!({ "s": null })).await;
            let text = all.body.to_string();
            assert!(text.contains(&w.a.tenant_id) && text.contains(&w.b.tenant_id));
            let mine = w.reseller.gql(doc, json!({ "s": null })).await;
            assert!(mine.body.to_string().contains(&w.a.tenant_id));
        }
        "reseller" => {
            let doc = "query($id: ID!) { reseller(id: $id) { id name tier } }";
            for (who, c) in [
                ("tenant_admin of A", &w.a_admin),
                ("tenant_user of B", &w.b_user),
            ] {
                let ans = c.gql(doc, json!({ "id": w.r_id })).await;
                assert_denied(
                    who,
                    field,
                    &ans,
                    &["NOT_FOUND"],
                    std::slice::from_ref(&w.r_id),
                );
            }
            let ans = w.reseller.gql(doc, json!({ "id": w.r2_id })).await;
            assert_denied(
                "reseller_admin of R",
                field,
                &ans,
                &["NOT_FOUND"],
                &[w.r2_id.clone(), w.r2_name.clone()],
            );
            let own = w.reseller.gql(doc, json!({ "id": w.r_id })).await;
            assert_eq!(own.data()["reseller"]["id"], json!(w.r_id));
            let any = w.support.gql(doc, json!({ "id": w.r2_id })).await;
            assert_eq!(any.data()["reseller"]["id"], json!(w.r2_id));
        }
        "resellers" => {
            let doc = "{ resellers(first: 100) { edges { node { id name } } } }";
            for (who, c) in [
                ("tenant_admin of A", &w.a_admin),
                ("tenant_user of B", &w.b_user),
            ] {
                let ans = c.gql(doc, json!({})).await;
                assert!(ans.errors().is_empty());
                assert_no_leak(who, field, &ans, &[w.r_id.clone(), w.r2_id.clone()]);
            }
            let ans = w.reseller.gql(doc, json!({})).await;
            assert_no_leak(
                "reseller_admin of R",
                field,
                &ans,
                &[w.r2_id.clone(), w.r2_name.clone()],
            );
            assert!(ans.body.to_string().contains(&w.r_id));
            let all = w.platform.gql(doc, json!({})).await.body.to_string();
            assert!(all.contains(&w.r_id) && all.contains(&w.r2_id));
        }
        "users" => {
            let doc = "{ users(first: 100) { edges { node { id email tenantId } } } }";
            for f in w.foreigners() {
                let ans = f.client.gql(doc, json!({})).await;
                assert!(ans.errors().is_empty(), "{}", ans.body);
                assert_no_leak(f.who, field, &ans, &f.target.secrets());
            }
            let all = w.support.gql(doc, json!({})).await.body.to_string();
            assert!(
                all.contains("admin@bolt-broadband.demo") && all.contains("admin@acme-fiber.demo")
            );
        }
        "apiKeys" => {
            let by_tenant = "query($t: ID) { apiKeys(tenantId: $t, first: 100) { edges { node { id tenantId prefix } } } }";
            for f in w.foreigners() {
                let ans = f
                    .client
                    .gql(by_tenant, json!({ "t": f.target.tenant_id }))
                    .await;
                assert_denied(f.who, field, &ans, &["NOT_FOUND"], &f.target.secrets());
                let ans = f.client.gql(by_tenant, json!({ "t": null })).await;
                assert!(ans.errors().is_empty(), "{}", ans.body);
                assert_no_leak(f.who, field, &ans, &f.target.secrets());
            }
            let ans = w
                .support
                .gql(by_tenant, json!({ "t": w.b.tenant_id }))
                .await;
            assert!(
                ans.body.to_string().contains(&w.b.api_key_id),
                "{}",
                ans.body
            );
        }
        "auditLog" => {
            let doc = "query($t: ID) { auditLog(first: 100, filter: { tenantId: $t }) { edges { node { id tenantId action objectId actor } } } }";
            for f in w.foreigners() {
                let ans = f.client.gql(doc, json!({ "t": f.target.tenant_id })).await;
                assert_denied(f.who, field, &ans, &["NOT_FOUND"], &f.target.secrets());
                let ans = f.client.gql(doc, json!({ "t": null })).await;
                assert!(ans.errors().is_empty(), "{}", ans.body);
                assert_no_leak(f.who, field, &ans, &f.target.secrets());
            }
            let ans = w.support.gql(doc, json!({ "t": w.b.tenant_id })).await;
            assert!(
                ans.body.to_string().contains(&w.b.tenant_id),
                "{}",
                ans.body
            );
        }
        "meters" | "meter" => {
            // The platform's catalogue: every principal reads the same meters,
            // and nothing tenant-specific is in it.
            let id = w.meter(&format!("q-{field}")).await;
            let doc = "query($id: ID!) { meter(id: $id) { id slug } meters(first: 100) { edges { node { id slug aggregation window } } } }";
            for (who, c) in w.everyone() {
                let ans = c.gql(doc, json!({ "id": id })).await;
                assert!(ans.errors().is_empty(), "{who}: {}", ans.body);
                assert!(
                    ans.body["data"]["meters"].to_string().contains(&id),
                    "{who}"
                );
                assert_no_leak(who, field, &ans, &w.a.secrets());
                assert_no_leak(who, field, &ans, &w.b.secrets());
            }
            w.a_user
                .gql(
                    "{ meter(id: \"mtr_0123456789abcdef0123456789abcdef\") { id } }",
                    json!({}),
                )
                .await
                .expect_code("NOT_FOUND");
        }
        "usage" => {
            let slug = format!("q-{field}");
            w.meter(&slug).await;
            // Committed usage for A and B, in ClickHouse (serve) or in the
            // embedded store (dev).
            for (offset, tenant) in [(0, &w.a.tenant_id), (1, &w.b.tenant_id)] {
                committed_usage(&w.srv.app, tenant, &slug, offset).await;
            }
            let doc = "query($m: String!, $f: DateTime!, $t: DateTime!, $tenant: ID) { usage(meter: $m, from: $f, to: $t, tenantId: $tenant) { tenantId windowStart group { property value } value } }";
            let now = w.srv.clock.now();
            let vars = |tenant: Option<&str>| json!({ "m": slug, "f": (now - chrono::TimeDelta::days(1)).to_rfc3339(), "t": (now + chrono::TimeDelta::hours(1)).to_rfc3339(), "tenant": tenant });
            for f in w.foreigners() {
                let ans = f.client.gql(doc, vars(Some(&f.target.tenant_id))).await;
                assert_denied(f.who, field, &ans, &["NOT_FOUND"], &f.target.secrets());
                let ans = f.client.gql(doc, vars(None)).await;
                assert!(ans.errors().is_empty(), "{}: {}", f.who, ans.body);
                assert_no_leak(f.who, field, &ans, &f.target.secrets());
            }
            // Each sees its own, and the platform sees both.
            for (who, c, sees) in [
                ("tenant_user of A", &w.a_user, vec![&w.a.tenant_id]),
                ("tenant_admin of B", &w.b_admin, vec![&w.b.tenant_id]),
                ("reseller_admin of R", &w.reseller, vec![&w.a.tenant_id]),
                (
                    "platform_admin",
                    &w.platform,
                    vec![&w.a.tenant_id, &w.b.tenant_id],
                ),
                ("support", &w.support, vec![&w.a.tenant_id, &w.b.tenant_id]),
            ] {
                let ans = c.gql(doc, vars(None)).await;
                let got: Vec<String> = ans.data()["usage"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["tenantId"].as_str().unwrap().to_owned())
                    .collect();
                assert_eq!(got.iter().collect::<Vec<_>>(), sees, "{who}");
            }
        }
        "plans" | "plan" | "subscriptions" | "invoices" | "invoice" | "reconciliation"
        | "taxRates" => billing::query_case(w, field).await,
        "instanceRollouts" | "instanceRollout" => instances::rollout_query_case(w, field).await,
        "plugins" | "plugin" | "licences" | "licence" => licensing::query_case(w, field).await,
        other => panic!("no isolation case for Query.{other}: add one before exposing the field"),
    }
}

/// Usage of `tenant` committed the way an aggregator flush commits it.
async fn committed_usage(app: &dotmac_api::app::App, tenant: &str, meter: &str, offset: i64) {
    use dotmac_aggregator::rows::{BatchRow, RollupPartRow};
    use dotmac_schema::usage::{RollupKey, RollupState, Window};
    let key = RollupKey {
        tenant: tenant.to_owned(),
        meter: meter.to_owned(),
        window_start: Window::Hour.start(app.clock.now()),
        group: vec![("region".into(), "north".into())],
    };
    let write_id = uuid::Uuid::now_v7().simple().to_string();
    let part = RollupPartRow::new(
        &key,
        &RollupState::Sum(rust_decimal::Decimal::new(125, 1)),
        0,
        &write_id,
    );
    let batch = BatchRow {
        partition: 0,
        first_offset: offset,
        last_offset: offset,
        write_id,
        written_at_us: 0,
        events: 1,
        accepted: 1,
        duplicates: 0,
        dead_lettered: 0,
        epoch: 0,
    };
    crate::support::commit_part(app, part, batch).await;
}

/// A lifecycle mutation on a fresh tenant prepared by `path`.
async fn lifecycle_case(w: &World, field: &str, path: &[&str], expect_state: &str) {
    let target = w.fresh_tenant(path).await;
    let before = w.tenant_state(&target.tenant_id).await;
    let doc = format!(
        "mutation($id: ID!) {{ {field}(id: $id, reason: \"isolation test\") {{ id name state }} }}"
    );
    assert_foreigners_denied(
        w,
        field,
        &doc,
        json!({ "id": target.tenant_id }),
        &target.secrets(),
    )
    .await;
    // The reseller may run lifecycle operations, so for it the answer must be NOT_FOUND.
    let ans = w
        .reseller
        .gql(&doc, json!({ "id": target.tenant_id }))
        .await;
    assert_denied(
        "reseller_admin of R",
        field,
        &ans,
        &["NOT_FOUND"],
        &target.secrets(),
    );
    let ans = w.support.gql(&doc, json!({ "id": target.tenant_id })).await;
    assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
    assert_eq!(
        w.tenant_state(&target.tenant_id).await,
        before,
        "{field}: state changed by a denied call"
    );
    let ok = w
        .platform
        .gql(&doc, json!({ "id": target.tenant_id }))
        .await;
    assert_eq!(ok.data()[field]["state"], expect_state);
}

async fn mutation_case(w: &World, field: &str) {
    match field {
        "provisionTenant" => lifecycle_case(w, field, &[], "PROVISIONING").await,
        "activateTenant" => lifecycle_case(w, field, &["provisionTenant"], "ACTIVE").await,
        "markTenantFailed" => lifecycle_case(w, field, &["provisionTenant"], "FAILED").await,
        "suspendTenant" => {
            lifecycle_case(
                w,
                field,
                &["provisionTenant", "activateTenant"],
                "SUSPENDED",
            )
            .await
        }
        "reactivateTenant" => {
            lifecycle_case(
                w,
                field,
                &["provisionTenant", "activateTenant", "suspendTenant"],
                "ACTIVE",
            )
            .await
        }
        "startTenantMaintenance" => {
            lifecycle_case(
                w,
                field,
                &["provisionTenant", "activateTenant"],
                "MAINTENANCE",
            )
            .await
        }
        "cancelTenant" => {
            lifecycle_case(
                w,
                field,
                &["provisionTenant", "activateTenant"],
                "CANCELLED",
            )
            .await
        }
        "deprovisionTenant" => lifecycle_case(w, field, &["cancelTenant"], "DEPROVISIONED").await,
        "updateTenant" => {
            let target = w.fresh_tenant(&[]).await;
            let doc = "mutation($id: ID!) { updateTenant(id: $id, input: { name: \"Hijacked\" }) { id name } }";
            assert_foreigners_denied(
                w,
                field,
                doc,
                json!({ "id": target.tenant_id }),
                &target.secrets(),
            )
            .await;
            // Tenant admins may update their own tenant, so another one is NOT_FOUND.
            let ans = w.a_admin.gql(doc, json!({ "id": target.tenant_id })).await;
            assert_denied(
                "tenant_admin of A",
                field,
                &ans,
                &["NOT_FOUND"],
                &target.secrets(),
            );
            let ans = w.a_user.gql(doc, json!({ "id": w.a.tenant_id })).await;
            assert_denied("tenant_user of A on A", field, &ans, &["FORBIDDEN"], &[]);
            let ans = w.support.gql(doc, json!({ "id": target.tenant_id })).await;
            assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
            assert_eq!(
                w.tenant_state(&target.tenant_id).await["name"],
                json!(target.name)
            );
            let ok = w.platform.gql(doc, json!({ "id": target.tenant_id })).await;
            assert_eq!(ok.data()["updateTenant"]["name"], "Hijacked");
            // Where a tenant is taxed is the platform's to set: not its own
            // admin's, nor its reseller's.
            let tax = "mutation($id: ID!) { updateTenant(id: $id, input: { taxJurisdiction: \"KY\" }) { id taxJurisdiction } }";
            for (who, c) in [
                ("tenant_admin of A", &w.a_admin),
                ("reseller_admin of R", &w.reseller),
            ] {
                let ans = c.gql(tax, json!({ "id": w.a.tenant_id })).await;
                assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
            }
            assert_eq!(
                w.tenant_state(&w.a.tenant_id).await["taxJurisdiction"],
                json!(null)
            );
            let ok = w.platform.gql(tax, json!({ "id": target.tenant_id })).await;
            assert_eq!(ok.data()["updateTenant"]["taxJurisdiction"], "KY");
        }
        "createTenant" => {
            let doc = "mutation($r: ID, $n: String = \"Made In Test\") { createTenant(input: { name: $n, resellerId: $r }) { id resellerId } }";
            for (who, c) in [
                ("tenant_admin of A", &w.a_admin),
                ("tenant_user of B", &w.b_user),
                ("support", &w.support),
            ] {
                let ans = c.gql(doc, json!({ "r": null })).await;
                assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
            }
            let ans = w.reseller.gql(doc, json!({ "r": w.r2_id })).await;
            assert_denied(
                "reseller_admin of R",
                field,
                &ans,
                &["NOT_FOUND"],
                &[w.r2_id.clone(), w.r2_name.clone()],
            );
            let mine = w.reseller.gql(doc, json!({ "r": null })).await;
            let created = mine.data()["createTenant"].clone();
            assert_eq!(created["resellerId"], json!(w.r_id));
            let peek = w
                .b_admin
                .gql(
                    "query($id: ID!) { tenant(id: $id) { id } }",
                    json!({ "id": created["id"] }),
                )
                .await;
            peek.expect_code("NOT_FOUND");
            let ok = w
                .platform
                .gql(doc, json!({ "r": w.r2_id, "n": "Made By Platform" }))
                .await;
            assert_eq!(ok.data()["createTenant"]["resellerId"], json!(w.r2_id));
        }
        "createReseller" => {
            let doc = "mutation { createReseller(input: { name: \"Rogue Reseller\" }) { id } }";
            for (who, c) in [
                ("reseller_admin of R", &w.reseller),
                ("tenant_admin of A", &w.a_admin),
                ("tenant_user of B", &w.b_user),
                ("support", &w.support),
            ] {
                let ans = c.gql(doc, json!({})).await;
                assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
            }
            w.platform.gql(doc, json!({})).await.data();
        }
        "createApiKey" => {
            let target = w.fresh_tenant(&[]).await;
            let doc = "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [USAGE_WRITE]) { apiKey { id tenantId } secret } }";
            assert_foreigners_denied(
                w,
                field,
                doc,
                json!({ "t": target.tenant_id }),
                &target.secrets(),
            )
            .await;
            for (who, c) in [
                ("tenant_admin of A", &w.a_admin),
                ("reseller_admin of R", &w.reseller),
            ] {
                let ans = c.gql(doc, json!({ "t": target.tenant_id })).await;
                assert_denied(who, field, &ans, &["NOT_FOUND"], &target.secrets());
            }
            let ans = w.a_user.gql(doc, json!({ "t": w.a.tenant_id })).await;
            assert_denied("tenant_user of A on A", field, &ans, &["FORBIDDEN"], &[]);
            assert_eq!(w.tenant_state(&target.tenant_id).await["apiKeyCount"], 0);
            let ok = w.platform.gql(doc, json!({ "t": target.tenant_id })).await;
            assert!(ok.data()["createApiKey"]["secret"]
                .as_str()
                .unwrap()
                .starts_with("dmk_"));
            let own = w.a_admin.gql(doc, json!({ "t": w.a.tenant_id })).await;
            assert_eq!(
                own.data()["createApiKey"]["apiKey"]["tenantId"],
                json!(w.a.tenant_id)
            );
        }
        "revokeApiKey" => {
            let target = w.fresh_tenant(&[]).await;
            let key = w
                .platform
                .gql(
                    "mutation($t: ID!) { createApiKey(tenantId: $t, scopes: [LICENSE_READ]) { apiKey { id } } }",
                    json!({ "t": target.tenant_id }),
                )
                .await;
            let key_id = key.data()["createApiKey"]["apiKey"]["id"]
                .as_str()
                .unwrap()
                .to_owned();
            let doc = "mutation($id: ID!) { revokeApiKey(id: $id) { id revokedAt } }";
            let mut secrets = target.secrets();
            secrets.push(key_id.clone());
            assert_foreigners_denied(w, field, doc, json!({ "id": key_id }), &secrets).await;
            let ans = w.a_admin.gql(doc, json!({ "id": key_id })).await;
            assert_denied("tenant_admin of A", field, &ans, &["NOT_FOUND"], &secrets);
            let ans = w.support.gql(doc, json!({ "id": key_id })).await;
            assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
            assert_eq!(w.tenant_state(&target.tenant_id).await["apiKeyCount"], 1);
            let ok = w.platform.gql(doc, json!({ "id": key_id })).await;
            assert!(ok.data()["revokeApiKey"]["revokedAt"].is_string());
        }
        "inviteUser" => {
            let target = w.fresh_tenant(&[]).await;
            let doc = "mutation($t: ID, $r: ID, $role: Role!) { inviteUser(input: { email: \"new@example.com\", role: $role, tenantId: $t, resellerId: $r }) { token invitation { id tenantId } } }";
            assert_foreigners_denied(
                w,
                field,
                doc,
                json!({ "t": target.tenant_id, "role": "TENANT_USER" }),
                &target.secrets(),
            )
            .await;
            for (who, c) in [
                ("tenant_admin of A", &w.a_admin),
                ("reseller_admin of R", &w.reseller),
            ] {
                let ans = c
                    .gql(
                        doc,
                        json!({ "t": target.tenant_id, "role": "TENANT_ADMIN" }),
                    )
                    .await;
                assert_denied(who, field, &ans, &["NOT_FOUND"], &target.secrets());
            }
            // Nobody grants above their own scope.
            let ans = w
                .a_admin
                .gql(doc, json!({ "role": "PLATFORM_ADMIN" }))
                .await;
            assert_denied("tenant_admin of A", field, &ans, &["FORBIDDEN"], &[]);
            let ans = w
                .reseller
                .gql(doc, json!({ "r": w.r2_id, "role": "RESELLER_AGENT" }))
                .await;
            assert_denied(
                "reseller_admin of R",
                field,
                &ans,
                &["NOT_FOUND"],
                std::slice::from_ref(&w.r2_id),
            );
            let ans = w
                .support
                .gql(doc, json!({ "t": target.tenant_id, "role": "TENANT_USER" }))
                .await;
            assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
            let ok = w
                .platform
                .gql(doc, json!({ "t": target.tenant_id, "role": "TENANT_USER" }))
                .await;
            assert_eq!(
                ok.data()["inviteUser"]["invitation"]["tenantId"],
                json!(target.tenant_id)
            );
            let own = w.a_admin.gql(doc, json!({ "role": "TENANT_USER" })).await;
            assert_eq!(
                own.data()["inviteUser"]["invitation"]["tenantId"],
                json!(w.a.tenant_id)
            );
        }
        "acceptInvitation" => {
            let target = w.fresh_tenant(&[]).await;
            let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
            let inv = w
                .platform
                .gql(
                    "mutation($t: ID!, $e: String!) { inviteUser(input: { email: $e, role: TENANT_ADMIN, tenantId: $t }) { token } }",
                    json!({ "t": target.tenant_id, "e": email }),
                )
                .await;
            let token = inv.data()["inviteUser"]["token"]
                .as_str()
                .unwrap()
                .to_owned();
            let doc = "mutation($k: String!) { acceptInvitation(token: $k, password: \"a-long-new-password\") { accessToken user { tenantId role } } }";
            let ans = w.srv.anonymous().gql(doc, json!({ "k": token })).await;
            let session = ans.data()["acceptInvitation"].clone();
            assert_eq!(session["user"]["tenantId"], json!(target.tenant_id));
            let newcomer = w
                .srv
                .anonymous()
                .with_token(session["accessToken"].as_str().unwrap());
            let seen = newcomer
                .gql(
                    "{ tenants(first: 100) { edges { node { id } } } }",
                    json!({}),
                )
                .await;
            assert_no_leak("invited user", field, &seen, &w.a.secrets());
            assert_no_leak("invited user", field, &seen, &w.b.secrets());
            assert!(seen.body.to_string().contains(&target.tenant_id));
            // An invitation works once.
            w.srv
                .anonymous()
                .gql(doc, json!({ "k": token }))
                .await
                .expect_code("VALIDATION");
        }
        "login" => {
            // A wrong password for another tenant's account reveals nothing.
            let doc = "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken user { id } } }";
            let ans = w
                .a_admin
                .gql(
                    doc,
                    json!({ "e": "admin@bolt-broadband.demo", "p": "wrong-password-1" }),
                )
                .await;
            assert_denied(
                "tenant_admin of A",
                field,
                &ans,
                &["UNAUTHENTICATED"],
                &w.b.secrets(),
            );
            // A session is bound to its own tenant only.
            let ok = w
                .srv
                .anonymous()
                .gql(
                    doc,
                    json!({ "e": "user@bolt-broadband.demo", "p": PASSWORD }),
                )
                .await;
            let c = w
                .srv
                .anonymous()
                .with_token(ok.data()["login"]["accessToken"].as_str().unwrap());
            c.gql(
                "query($id: ID!) { tenant(id: $id) { id } }",
                json!({ "id": w.a.tenant_id }),
            )
            .await
            .expect_code("NOT_FOUND");
        }
        "refreshToken" => {
            let login = "mutation { login(email: \"admin@bolt-broadband.demo\", password: \"test-password-123\") { refreshToken user { id } } }";
            let first = w.srv.anonymous().gql(login, json!({})).await;
            let rt = first.data()["login"]["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned();
            let doc = "mutation($t: String!) { refreshToken(refreshToken: $t) { accessToken refreshToken user { id tenantId } } }";
            let next = w.srv.anonymous().gql(doc, json!({ "t": rt })).await;
            assert_eq!(
                next.data()["refreshToken"]["user"]["tenantId"],
                json!(w.b.tenant_id)
            );
            // The rotated token is dead, and replaying it kills the whole family.
            w.srv
                .anonymous()
                .gql(doc, json!({ "t": rt }))
                .await
                .expect_code("UNAUTHENTICATED");
            let newer = next.data()["refreshToken"]["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned();
            w.srv
                .anonymous()
                .gql(doc, json!({ "t": newer }))
                .await
                .expect_code("UNAUTHENTICATED");
        }
        "logout" => {
            let login = "mutation { login(email: \"admin@bolt-broadband.demo\", password: \"test-password-123\") { refreshToken } }";
            let b = w.srv.anonymous().gql(login, json!({})).await;
            let rt = b.data()["login"]["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned();
            let doc = "mutation($t: String!) { logout(refreshToken: $t) }";
            // Another tenant's user cannot end B's session.
            let ans = w.a_admin.gql(doc, json!({ "t": rt })).await;
            assert_eq!(ans.data()["logout"], false);
            let still = w
                .srv
                .anonymous()
                .gql(
                    "mutation($t: String!) { refreshToken(refreshToken: $t) { refreshToken } }",
                    json!({ "t": rt }),
                )
                .await;
            let rt2 = still.data()["refreshToken"]["refreshToken"]
                .as_str()
                .unwrap()
                .to_owned();
            let b_client = w.srv.login("admin@bolt-broadband.demo").await;
            assert_eq!(
                b_client.gql(doc, json!({ "t": rt2 })).await.data()["logout"],
                true
            );
            w.srv
                .anonymous()
                .gql(
                    "mutation($t: String!) { refreshToken(refreshToken: $t) { refreshToken } }",
                    json!({ "t": rt2 }),
                )
                .await
                .expect_code("UNAUTHENTICATED");
            w.srv
                .anonymous()
                .gql(doc, json!({ "t": rt2 }))
                .await
                .expect_code("UNAUTHENTICATED");
        }
        "changePassword" => {
            let email = format!("{}@example.com", uuid::Uuid::new_v4().simple());
            let inv = w
                .platform
                .gql(
                    "mutation($t: ID!, $e: String!) { inviteUser(input: { email: $e, role: TENANT_USER, tenantId: $t }) { token } }",
                    json!({ "t": w.a.tenant_id, "e": email }),
                )
                .await;
            let token = inv.data()["inviteUser"]["token"]
                .as_str()
                .unwrap()
                .to_owned();
            let session = w
                .srv
                .anonymous()
                .gql(
                    "mutation($k: String!) { acceptInvitation(token: $k, password: \"first-password-1\") { accessToken } }",
                    json!({ "k": token }),
                )
                .await;
            let me = w.srv.anonymous().with_token(
                session.data()["acceptInvitation"]["accessToken"]
                    .as_str()
                    .unwrap(),
            );
            let doc = "mutation($c: String!, $n: String!) { changePassword(currentPassword: $c, newPassword: $n) }";
            me.gql(
                doc,
                json!({ "c": "wrong-password-9", "n": "second-password-2" }),
            )
            .await
            .expect_code("VALIDATION");
            // Read-only users may still change their own password, and only theirs.
            assert_eq!(
                me.gql(
                    doc,
                    json!({ "c": "first-password-1", "n": "second-password-2" })
                )
                .await
                .data()["changePassword"],
                true
            );
            w.srv.anonymous().login(&email, "second-password-2").await;
            w.srv.login("user@acme-fiber.demo").await;
            w.srv
                .anonymous()
                .gql(doc, json!({ "c": "x", "n": "y" }))
                .await
                .expect_code("UNAUTHENTICATED");
        }
        "createMeter" | "updateMeter" | "archiveMeter" => {
            // Only platform admins manage meters; everyone else is FORBIDDEN
            // and the catalogue is unchanged.
            let id = w.meter(&format!("m-{}", field.to_lowercase())).await;
            let doc = match field {
                "createMeter" => "mutation { createMeter(input: { slug: \"rogue-meter\", name: \"Rogue\", eventType: \"x\", aggregation: COUNT, window: HOUR }) { id } }",
                "updateMeter" => "mutation($id: ID!) { updateMeter(id: $id, input: { name: \"Renamed\" }) { id name } }",
                _ => "mutation($id: ID!) { archiveMeter(id: $id, reason: \"isolation test\") { id archivedAt } }",
            };
            let vars = if field == "createMeter" {
                json!({})
            } else {
                json!({ "id": id })
            };
            for (who, c) in w
                .everyone()
                .into_iter()
                .filter(|(who, _)| *who != "platform_admin")
            {
                let ans = c.gql(doc, vars.clone()).await;
                assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
            }
            let after = w
                .platform
                .gql(
                    "query($id: ID!) { meter(id: $id) { name archivedAt } }",
                    json!({ "id": id }),
                )
                .await;
            assert_eq!(after.data()["meter"]["archivedAt"], Value::Null);
            assert_ne!(after.data()["meter"]["name"], "Renamed");
            if field == "createMeter" {
                let all = w
                    .platform
                    .gql(
                        "{ meters(first: 100) { edges { node { slug } } } }",
                        json!({}),
                    )
                    .await;
                assert!(!all.body.to_string().contains("rogue-meter"));
            }
            w.platform.gql(doc, vars).await.data();
        }
        "createPlan"
        | "subscribe"
        | "closeBillingPeriod"
        | "createCreditNote"
        | "recordPayment"
        | "voidInvoice"
        | "markInvoiceUncollectible"
        | "changePlan"
        | "cancelSubscription"
        | "pauseSubscription"
        | "resumeSubscription"
        | "createTaxRate" => billing::mutation_case(w, field).await,
        "upgradeTenantInstance" | "rotateTenantSecrets" | "abandonInstanceCleanup" => {
            instances::mutation_case(w, field).await
        }
        "startInstanceRollout" => instances::rollout_mutation_case(w).await,
        "createPlugin" | "updatePlugin" | "takeLicence" | "changeLicenceTier" | "cancelLicence"
        | "revokeLicence" | "activateLicence" | "deactivateLicence" => {
            licensing::mutation_case(w, field).await
        }
        other => {
            panic!("no isolation case for Mutation.{other}: add one before exposing the field")
        }
    }
}

/// Opens a `graphql-transport-ws` subscription and returns the socket.
pub async fn subscribe(
    base: &str,
    token: &str,
    query: &str,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = format!("{}/graphql", base.replacen("http", "ws", 1));
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket");
    let init = json!({ "type": "connection_init", "payload": { "authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string())).await.unwrap();
    let ack = next_json(&mut ws).await;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    let sub = json!({ "id": "1", "type": "subscribe", "payload": { "query": query } });
    ws.send(Message::text(sub.to_string())).await.unwrap();
    // graphql-transport-ws does not acknowledge a subscribe; give the server
    // a moment to register it so that an event published right after is not
    // racing the registration on a loaded CI machine.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    ws
}

pub async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("a websocket message within 10 s")
            .expect("stream open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] != "ping" && v["type"] != "pong" {
                return v;
            }
        }
    }
}

fn token_of(c: &Client) -> &str {
    c.token.as_deref().unwrap()
}

async fn subscription_case(w: &World, field: &str) {
    match field {
        "tenantEvents" => {
            let q = "subscription { tenantEvents { tenantId from to action reason } }";
            let mut a_sub = subscribe(&w.srv.url, token_of(&w.a_user), q).await;
            let mut r_sub = subscribe(&w.srv.url, token_of(&w.reseller), q).await;
            let mut b_sub = subscribe(&w.srv.url, token_of(&w.b_admin), q).await;
            let mut support_sub = subscribe(&w.srv.url, token_of(&w.support), q).await;
            // B changes first, then A: subscribers of A must see A's event first.
            let b_reactivate = w
                .platform
                .gql(
                    "mutation($id: ID!) { reactivateTenant(id: $id) { state } }",
                    json!({ "id": w.b.tenant_id }),
                )
                .await;
            b_reactivate.data();
            let a_maint = w
                .platform
                .gql("mutation($id: ID!) { startTenantMaintenance(id: $id, reason: \"window\") { state } }", json!({ "id": w.a.tenant_id }))
                .await;
            a_maint.data();
            for (who, ws) in [
                ("tenant_user of A", &mut a_sub),
                ("reseller_admin of R", &mut r_sub),
            ] {
                let ev = next_json(ws).await;
                assert_eq!(
                    ev["payload"]["data"]["tenantEvents"]["tenantId"],
                    json!(w.a.tenant_id),
                    "{who}: {ev}"
                );
                assert!(
                    !ev.to_string().contains(&w.b.tenant_id),
                    "{who} saw B's event"
                );
            }
            let ev = next_json(&mut b_sub).await;
            assert_eq!(
                ev["payload"]["data"]["tenantEvents"]["tenantId"],
                json!(w.b.tenant_id)
            );
            assert_eq!(ev["payload"]["data"]["tenantEvents"]["to"], "ACTIVE");
            let next = next_json(&mut b_sub);
            let leaked = tokio::time::timeout(std::time::Duration::from_millis(500), next).await;
            assert!(
                leaked.is_err(),
                "B's subscriber saw another event: {leaked:?}"
            );
            let first = next_json(&mut support_sub).await;
            let second = next_json(&mut support_sub).await;
            assert_eq!(
                first["payload"]["data"]["tenantEvents"]["tenantId"],
                json!(w.b.tenant_id)
            );
            assert_eq!(
                second["payload"]["data"]["tenantEvents"]["reason"],
                "window"
            );
            // Without credentials there is no subscription.
            let url = format!("{}/graphql", w.srv.url.replacen("http", "ws", 1));
            let mut req = url.into_client_request().unwrap();
            req.headers_mut().insert(
                "sec-websocket-protocol",
                "graphql-transport-ws".parse().unwrap(),
            );
            let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
            ws.send(Message::text(
                json!({ "type": "connection_init", "payload": {} }).to_string(),
            ))
            .await
            .unwrap();
            assert_eq!(next_json(&mut ws).await["type"], "connection_ack");
            ws.send(Message::text(
                json!({ "id": "1", "type": "subscribe", "payload": { "query": q } }).to_string(),
            ))
            .await
            .unwrap();
            let err = next_json(&mut ws).await;
            assert_eq!(err["payload"]["data"], Value::Null, "{err}");
            assert_eq!(
                err["payload"]["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
                "{err}"
            );
        }
        "usageUpdated" => {
            let q = "subscription { usageUpdated(meter: \"iso-meter\") { tenantId meter committedAt } }";
            let mut a_sub = subscribe(&w.srv.url, token_of(&w.a_user), q).await;
            let mut r_sub = subscribe(&w.srv.url, token_of(&w.reseller), q).await;
            let mut b_sub = subscribe(&w.srv.url, token_of(&w.b_admin), q).await;
            let mut support_sub = subscribe(&w.srv.url, token_of(&w.support), q).await;
            let update = |tenant: &str, reseller: Option<&str>, meter: &str| {
                dotmac_api::bus::BusEvent::Usage(dotmac_api::bus::UsageUpdate {
                    tenant_id: tenant.to_owned(),
                    reseller_id: reseller.map(str::to_owned),
                    meter: meter.to_owned(),
                    committed_at: w.srv.clock.now(),
                })
            };
            // Published as an aggregator publishes them: B, another meter, then A.
            let bus = &w.srv.app.bus;
            bus.publish(&update(&w.b.tenant_id, None, "iso-meter"))
                .await
                .unwrap();
            bus.publish(&update(&w.a.tenant_id, Some(&w.r_id), "other-meter"))
                .await
                .unwrap();
            bus.publish(&update(&w.a.tenant_id, Some(&w.r_id), "iso-meter"))
                .await
                .unwrap();
            for (who, ws, sees) in [
                ("tenant_user of A", &mut a_sub, &w.a.tenant_id),
                ("reseller_admin of R", &mut r_sub, &w.a.tenant_id),
                ("tenant_admin of B", &mut b_sub, &w.b.tenant_id),
                ("support", &mut support_sub, &w.b.tenant_id),
            ] {
                let ev = next_json(ws).await;
                let data = &ev["payload"]["data"]["usageUpdated"];
                assert_eq!(data["tenantId"], json!(sees), "{who}: {ev}");
                assert_eq!(data["meter"], "iso-meter", "{who}: {ev}");
            }
            for (who, ws) in [("tenant_admin of B", &mut b_sub)] {
                let leaked =
                    tokio::time::timeout(std::time::Duration::from_millis(500), next_json(ws))
                        .await;
                assert!(
                    leaked.is_err(),
                    "{who} saw another tenant's update: {leaked:?}"
                );
            }
            let second = next_json(&mut support_sub).await;
            assert_eq!(
                second["payload"]["data"]["usageUpdated"]["tenantId"],
                json!(w.a.tenant_id)
            );
        }
        "invoiceFinalized" => billing::subscription_case(w).await,
        "instanceEvents" => instances::subscription_case(w).await,
        "instanceRolloutProgress" => instances::rollout_subscription_case(w).await,
        other => {
            panic!("no isolation case for Subscription.{other}: add one before exposing the field")
        }
    }
}

async fn run_suite(backend: Backend) {
    let w = World::build(backend).await;
    let sdl = dotmac_api::graphql::sdl();
    let queries = root_fields(&sdl, "QueryRoot");
    let mutations = root_fields(&sdl, "MutationRoot");
    let subscriptions = root_fields(&sdl, "SubscriptionRoot");
    assert!(
        queries.len() >= 8 && mutations.len() >= 19 && !subscriptions.is_empty(),
        "SDL parse: {queries:?} {mutations:?}"
    );
    for f in &queries {
        query_case(&w, f).await;
    }
    for f in &mutations {
        mutation_case(&w, f).await;
    }
    for f in &subscriptions {
        subscription_case(&w, f).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_on_postgres_with_rls() {
    run_suite(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn isolation_on_embedded_sqlite() {
    run_suite(Backend::Sqlite).await;
}

#[test]
fn sdl_parser_finds_every_root_field() {
    let sdl = "type QueryRoot {\n\t\"\"\"\n\tdoc\n\t\"\"\"\n\tme: User!\n\ttenant(id: ID!): Tenant!\n\t\"\"\"one line\"\"\"\n\tusers(\n\t\tfirst: Int\n\t): X!\n}\n";
    assert_eq!(root_fields(sdl, "QueryRoot"), vec!["me", "tenant", "users"]);
}

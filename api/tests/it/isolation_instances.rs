//! Isolation of tenants' instances: `Tenant.instance`, the instance
//! mutations, `instanceEvents`, and rollouts (`instanceRollouts`,
//! `instanceRollout`, `startInstanceRollout`, `instanceRolloutProgress`:
//! platform admins' alone). The suite's own world runs without a
//! cluster (its lifecycle cases activate tenants by hand); these cases also
//! build a world of their own with the local cluster target (and, on
//! Postgres, the real OpenBao for tenants' secrets), where instances exist.

use std::time::Duration;

use serde_json::{json, Value};

use super::{
    assert_denied, assert_foreigners_denied, assert_no_leak, next_json, subscribe, token_of, World,
};
use crate::support::{Backend, Client, TestServer};

/// A world whose tenants have instances on the local cluster target.
pub struct InstanceWorld {
    pub srv: TestServer,
    platform: Client,
    support: Client,
    reseller: Client,
    a_admin: Client,
    a_user: Client,
    b_admin: Client,
    a_id: String,
    b_id: String,
    _cluster_dir: tempfile::TempDir,
}

impl InstanceWorld {
    pub async fn build(backend: Backend) -> InstanceWorld {
        let cluster_dir = tempfile::tempdir().unwrap();
        let local_dir = cluster_dir.path().join("cluster").display().to_string();
        let srv = TestServer::start_with(backend, |c| {
            c.orchestrator.target = dotmac_api::config::OrchestratorTarget::Local;
            c.orchestrator.local_dir = local_dir;
            if backend == Backend::Postgres {
                // Production's store: tenants' secrets in the real OpenBao.
                c.vault_addr = std::env::var("DOTMAC_VAULT_ADDR")
                    .unwrap_or_else(|_| "http://127.0.0.1:8200".into());
                c.vault_token =
                    std::env::var("DOTMAC_VAULT_TOKEN").unwrap_or_else(|_| "root".into());
            }
        })
        .await;
        let platform = srv.login("admin@demo.dotmac.dev").await;
        let ids = platform
            .gql(
                "{ tenants(first: 10) { edges { node { id slug } } } }",
                json!({}),
            )
            .await;
        let id = |slug: &str| {
            ids.data()["tenants"]["edges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["node"]["slug"] == slug)
                .unwrap()["node"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        let w = InstanceWorld {
            a_id: id("acme-fiber"),
            b_id: id("bolt-broadband"),
            support: srv.login("support@demo.dotmac.dev").await,
            reseller: srv.login("reseller@demo.dotmac.dev").await,
            a_admin: srv.login("admin@acme-fiber.demo").await,
            a_user: srv.login("user@acme-fiber.demo").await,
            b_admin: srv.login("admin@bolt-broadband.demo").await,
            platform,
            srv,
            _cluster_dir: cluster_dir,
        };
        // The seeded tenants were provisioned: A's instance comes up, and
        // B's (the demo suspends B) is scaled to zero.
        w.wait_instance(&w.a_id, |i| i["phase"] == "READY" && i["ready"] == true)
            .await;
        w.wait_instance(&w.b_id, |i| i["phase"] == "SUSPENDED")
            .await;
        w
    }

    async fn instance(&self, c: &Client, id: &str) -> Value {
        c.gql(
            "query($id: ID!) { tenant(id: $id) { instance { phase ready namespace desiredVersion currentVersion secretsVersion synced blockingStep conditions { type ok reason message } } } }",
            json!({ "id": id }),
        )
        .await
        .data()["tenant"]["instance"]
            .clone()
    }

    async fn wait_instance(&self, id: &str, done: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            let i = self.instance(&self.platform, id).await;
            if done(&i) {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "instance of {id} never got there: {}",
            self.instance(&self.platform, id).await
        );
    }
}

async fn instance_world(w: &World) -> &InstanceWorld {
    w.instances
        .get_or_init(|| InstanceWorld::build(w.backend))
        .await
}

/// `Tenant.instance` is scoped like the tenant: visible in scope, the
/// tenant itself NOT_FOUND outside it; lists batch it per page.
pub async fn instance_field_case(w: &World) {
    let iw = instance_world(w).await;
    let a = iw.instance(&iw.a_user, &iw.a_id).await;
    assert_eq!(a["phase"], "READY", "{a}");
    assert!(a["namespace"].as_str().unwrap().starts_with("tenant-"));
    assert_eq!(a["conditions"].as_array().unwrap().len(), 5, "{a}");
    // Its objects as the cluster has them, readable in scope, Secrets redacted.
    let m = iw
        .a_user
        .gql(
            "query($id: ID!) { tenant(id: $id) { instance { manifests { kind namespace name yaml } } } }",
            json!({ "id": iw.a_id }),
        )
        .await;
    let manifests = m.data()["tenant"]["instance"]["manifests"]
        .as_array()
        .unwrap()
        .clone();
    let kinds: Vec<&str> = manifests
        .iter()
        .map(|x| x["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"Deployment") && kinds.contains(&"NetworkPolicy"),
        "{kinds:?}"
    );
    let secret = manifests.iter().find(|x| x["kind"] == "Secret").unwrap();
    assert!(
        secret["yaml"].as_str().unwrap().contains("[redacted]"),
        "{secret}"
    );
    assert!(!secret["yaml"].as_str().unwrap().contains("managedFields"));
    let doc =
        "query($id: ID!) { tenant(id: $id) { instance { phase namespace manifests { name } } } }";
    for (who, c, target) in [
        ("tenant_admin of B", &iw.b_admin, &iw.a_id),
        ("tenant_user of A", &iw.a_user, &iw.b_id),
        ("reseller_admin of R", &iw.reseller, &iw.b_id),
    ] {
        let ans = c.gql(doc, json!({ "id": target })).await;
        assert_denied(
            who,
            "tenant",
            &ans,
            &["NOT_FOUND"],
            std::slice::from_ref(target),
        );
    }
    // The reseller's page carries its own tenant's instance, not B's.
    let page = iw
        .reseller
        .gql(
            "{ tenants(first: 50) { edges { node { id instance { phase namespace } } } } }",
            json!({}),
        )
        .await;
    let text = page.body.to_string();
    assert!(
        text.contains(&iw.a_id) && !text.contains(&iw.b_id),
        "{text}"
    );
    let b_ns = iw.instance(&iw.platform, &iw.b_id).await["namespace"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_no_leak("reseller_admin of R", "tenants", &page, &[b_ns]);
    // Without a cluster (the suite's own world) there is no instance.
    let none = w
        .a_user
        .gql(
            "query($id: ID!) { tenant(id: $id) { instance { phase } } }",
            json!({ "id": w.a.tenant_id }),
        )
        .await;
    assert_eq!(none.data()["tenant"]["instance"], Value::Null);
}

pub async fn mutation_case(w: &World, field: &str) {
    let doc = match field {
        "upgradeTenantInstance" => {
            "mutation($id: ID!) { upgradeTenantInstance(id: $id, version: \"1.1.0\") { id instance { desiredVersion } } }"
        }
        "rotateTenantSecrets" => {
            "mutation($id: ID!) { rotateTenantSecrets(id: $id) { id instance { secretsVersion } } }"
        }
        _ => "mutation($id: ID!) { abandonInstanceCleanup(id: $id, reason: \"isolation test\") { id } }",
    };
    // The suite's world has no cluster: out of scope is still NOT_FOUND or
    // FORBIDDEN, and in scope the answer says why nothing can be done.
    assert_foreigners_denied(
        w,
        field,
        doc,
        json!({ "id": w.b.tenant_id }),
        &w.b.secrets(),
    )
    .await;
    let ans = w.support.gql(doc, json!({ "id": w.a.tenant_id })).await;
    assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
    let ans = w.platform.gql(doc, json!({ "id": w.a.tenant_id })).await;
    ans.expect_code("CONFLICT");
    assert!(
        ans.body.to_string().contains("orchestrator.target"),
        "{}",
        ans.body
    );

    // With a cluster.
    let iw = instance_world(w).await;
    let denied_doc = doc;
    for (who, c, target, codes) in [
        (
            "tenant_admin of A",
            &iw.a_admin,
            &iw.b_id,
            &["NOT_FOUND", "FORBIDDEN"][..],
        ),
        ("tenant_user of A", &iw.a_user, &iw.a_id, &["FORBIDDEN"][..]),
        (
            "reseller_admin of R",
            &iw.reseller,
            &iw.b_id,
            &["NOT_FOUND", "FORBIDDEN"][..],
        ),
        ("support", &iw.support, &iw.a_id, &["FORBIDDEN"][..]),
    ] {
        let ans = c.gql(denied_doc, json!({ "id": target })).await;
        assert_denied(who, field, &ans, codes, &[]);
    }
    match field {
        "upgradeTenantInstance" => {
            // Operators' business: not even the tenant's own admin.
            let ans = iw.a_admin.gql(doc, json!({ "id": iw.a_id })).await;
            assert_denied("tenant_admin of A on A", field, &ans, &["FORBIDDEN"], &[]);
            let bad = iw
                .platform
                .gql("mutation($id: ID!) { upgradeTenantInstance(id: $id, version: \"1.0 ; rm\") { id } }", json!({ "id": iw.b_id }))
                .await;
            bad.expect_code("VALIDATION");
            assert!(bad.body.to_string().contains("version"), "{}", bad.body);
            let a_before = iw.instance(&iw.platform, &iw.a_id).await["currentVersion"].clone();
            let ok = iw.platform.gql(doc, json!({ "id": iw.b_id })).await;
            assert_eq!(ok.data()[field]["instance"]["desiredVersion"], "1.1.0");
            iw.wait_instance(&iw.b_id, |i| {
                i["currentVersion"] == "1.1.0" && i["phase"] == "SUSPENDED"
            })
            .await;
            assert_eq!(
                iw.instance(&iw.platform, &iw.a_id).await["currentVersion"],
                a_before,
                "A untouched"
            );
        }
        "rotateTenantSecrets" => {
            let before = iw.instance(&iw.platform, &iw.a_id).await["secretsVersion"]
                .as_i64()
                .unwrap();
            let b_before = iw.instance(&iw.platform, &iw.b_id).await["secretsVersion"]
                .as_i64()
                .unwrap();
            // The tenant's own admin may rotate its secrets.
            iw.a_admin.gql(doc, json!({ "id": iw.a_id })).await.data();
            iw.wait_instance(&iw.a_id, |i| {
                i["secretsVersion"].as_i64() == Some(before + 1) && i["ready"] == true
            })
            .await;
            assert_eq!(
                iw.instance(&iw.platform, &iw.b_id).await["secretsVersion"].as_i64(),
                Some(b_before),
                "B untouched"
            );
        }
        _ => {
            // Only a cleanup under way can be abandoned.
            let ans = iw.platform.gql(doc, json!({ "id": iw.a_id })).await;
            ans.expect_code("CONFLICT");
            let ans = iw.a_admin.gql(doc, json!({ "id": iw.a_id })).await;
            assert_denied("tenant_admin of A on A", field, &ans, &["FORBIDDEN"], &[]);
        }
    }
}

pub async fn subscription_case(w: &World) {
    let iw = instance_world(w).await;
    let q = "subscription { instanceEvents { tenantId phase ready reason } }";
    let mut a_sub = subscribe(&iw.srv.url, token_of(&iw.a_user), q).await;
    let mut r_sub = subscribe(&iw.srv.url, token_of(&iw.reseller), q).await;
    let mut b_sub = subscribe(&iw.srv.url, token_of(&iw.b_admin), q).await;
    // B's instance changes first, then A's: A's subscribers see A's first.
    for id in [&iw.b_id, &iw.a_id] {
        iw.platform
            .gql(
                "mutation($id: ID!) { rotateTenantSecrets(id: $id) { id } }",
                json!({ "id": id }),
            )
            .await
            .data();
    }
    for (who, ws) in [
        ("tenant_user of A", &mut a_sub),
        ("reseller_admin of R", &mut r_sub),
    ] {
        let ev = next_json(ws).await;
        assert_eq!(
            ev["payload"]["data"]["instanceEvents"]["tenantId"],
            json!(iw.a_id),
            "{who}: {ev}"
        );
        assert!(!ev.to_string().contains(&iw.b_id), "{who} saw B's instance");
    }
    let ev = next_json(&mut b_sub).await;
    assert_eq!(
        ev["payload"]["data"]["instanceEvents"]["tenantId"],
        json!(iw.b_id),
        "{ev}"
    );
}

/// Everyone but platform admins: FORBIDDEN, with nothing of a rollout.
fn not_platform(iw: &InstanceWorld) -> [(&'static str, &Client); 5] {
    [
        ("tenant_admin of A", &iw.a_admin),
        ("tenant_user of A", &iw.a_user),
        ("tenant_admin of B", &iw.b_admin),
        ("reseller_admin of R", &iw.reseller),
        ("support", &iw.support),
    ]
}

const ROLLOUT_FIELDS: &str =
    "id version waveSize pauseSeconds state wave waves upgraded remaining stoppedReason startedBy finishedAt";

impl InstanceWorld {
    /// Starts a rollout of `version` as the platform and waits for its end.
    async fn rolled_out(&self, version: &str, wave_size: i32) -> Value {
        let started = self
            .platform
            .gql(
                &format!("mutation($v: String!, $w: Int!) {{ startInstanceRollout(input: {{ version: $v, waveSize: $w, pauseSeconds: 0, waveDeadlineSeconds: 60 }}) {{ {ROLLOUT_FIELDS} }} }}"),
                json!({ "v": version, "w": wave_size }),
            )
            .await;
        let id = started.data()["startInstanceRollout"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        for _ in 0..600 {
            let r = self.rollout(&self.platform, &id).await;
            if r.data()["instanceRollout"]["state"] != "RUNNING" {
                return r.data()["instanceRollout"].clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "rollout {id} never ended: {}",
            self.rollout(&self.platform, &id).await.body
        );
    }

    async fn rollout(&self, c: &Client, id: &str) -> crate::support::Answer {
        c.gql(
            &format!("query($id: ID!) {{ instanceRollout(id: $id) {{ {ROLLOUT_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await
    }
}

pub async fn rollout_query_case(w: &World, field: &str) {
    let doc = match field {
        "instanceRollouts" => {
            "{ instanceRollouts(first: 50) { edges { node { id version state } } } }"
        }
        _ => "query($id: ID!) { instanceRollout(id: $id) { id version } }",
    };
    let unknown = json!({ "id": dotmac_schema::RolloutId::new().to_string() });
    // Without a cluster: still platform admins' alone.
    assert_foreigners_denied(w, field, doc, unknown.clone(), &[]).await;
    let ans = w.support.gql(doc, unknown.clone()).await;
    assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
    let ans = w.platform.gql(doc, unknown.clone()).await;
    if field == "instanceRollout" {
        ans.expect_code("NOT_FOUND");
        let bad = w.platform.gql(doc, json!({ "id": "ten_00" })).await;
        bad.expect_code("VALIDATION");
        assert!(bad.body.to_string().contains("id"), "{}", bad.body);
    } else {
        assert!(ans.errors().is_empty(), "{}", ans.body);
    }

    // With a cluster and a rollout done: the platform sees it, no one else
    // sees anything of it.
    let iw = instance_world(w).await;
    let done = iw.rolled_out("1.2.0", 2).await;
    assert_eq!(done["state"], "COMPLETED", "{done}");
    let id = done["id"].as_str().unwrap().to_owned();
    let vars = json!({ "id": id });
    let seen = iw.platform.gql(doc, vars.clone()).await;
    assert!(seen.body.to_string().contains(&id), "{}", seen.body);
    for (who, c) in not_platform(iw) {
        let ans = c.gql(doc, vars.clone()).await;
        assert_denied(who, field, &ans, &["FORBIDDEN"], std::slice::from_ref(&id));
    }
}

pub async fn rollout_mutation_case(w: &World) {
    let field = "startInstanceRollout";
    let doc = "mutation($v: String!) { startInstanceRollout(input: { version: $v, waveSize: 1, pauseSeconds: 1 }) { id state } }";
    let vars = json!({ "v": "1.3.0" });
    assert_foreigners_denied(w, field, doc, vars.clone(), &[]).await;
    let ans = w.support.gql(doc, vars.clone()).await;
    assert_denied("support", field, &ans, &["FORBIDDEN"], &[]);
    // No cluster: nothing to roll out, and the answer says why.
    let ans = w.platform.gql(doc, vars.clone()).await;
    ans.expect_code("CONFLICT");
    assert!(
        ans.body.to_string().contains("orchestrator.target"),
        "{}",
        ans.body
    );

    let iw = instance_world(w).await;
    for (who, c) in not_platform(iw) {
        let ans = c.gql(doc, vars.clone()).await;
        assert_denied(who, field, &ans, &["FORBIDDEN"], &[]);
    }
    // Bad plans name their field.
    for (input, field_named) in [
        ("version: \"1.3 ; rm\", waveSize: 1", "version"),
        ("version: \"1.3.0\", waveSize: 0", "waveSize"),
        ("version: \"1.3.0\", waveSize: 501", "waveSize"),
        (
            "version: \"1.3.0\", waveSize: 1, pauseSeconds: -1",
            "pauseSeconds",
        ),
        (
            "version: \"1.3.0\", waveSize: 1, waveDeadlineSeconds: 0",
            "waveDeadlineSeconds",
        ),
    ] {
        let ans = iw
            .platform
            .gql(
                &format!("mutation {{ startInstanceRollout(input: {{ {input} }}) {{ id }} }}"),
                json!({}),
            )
            .await;
        ans.expect_code("VALIDATION");
        assert!(
            ans.body.to_string().contains(field_named),
            "{input}: {}",
            ans.body
        );
    }
    // One wave per tenant, a second apart: a second start meanwhile is a
    // conflict, and the first carries on to the end.
    let first = iw.platform.gql(doc, vars.clone()).await;
    let id = first.data()[field]["id"].as_str().unwrap().to_owned();
    assert_eq!(first.data()[field]["state"], "RUNNING");
    let second = iw.platform.gql(doc, json!({ "v": "1.4.0" })).await;
    second.expect_code("CONFLICT");
    let mut done = Value::Null;
    for _ in 0..600 {
        done = iw.rollout(&iw.platform, &id).await.data()["instanceRollout"].clone();
        if done["state"] != "RUNNING" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done["state"], "COMPLETED", "{done}");
    assert_eq!(done["wave"], done["waves"], "{done}");
    assert_eq!(done["remaining"], 0, "{done}");
    assert!(done["upgraded"].as_i64().unwrap() >= 2, "{done}");
    assert!(
        done["startedBy"].as_str().unwrap().starts_with("usr_"),
        "{done}"
    );
    // Every tenant's instance runs it, the suspended one scaled to zero.
    iw.wait_instance(&iw.a_id, |i| {
        i["currentVersion"] == "1.3.0" && i["ready"] == true
    })
    .await;
    iw.wait_instance(&iw.b_id, |i| {
        i["currentVersion"] == "1.3.0" && i["phase"] == "SUSPENDED"
    })
    .await;
    // Again: nothing left to do, done at once.
    let again = iw.rolled_out("1.3.0", 5).await;
    assert_eq!(again["state"], "COMPLETED", "{again}");
    assert_eq!(again["upgraded"], 0, "{again}");
}

pub async fn rollout_subscription_case(w: &World) {
    let iw = instance_world(w).await;
    let q = |id: &str| {
        format!("subscription {{ instanceRolloutProgress(id: \"{id}\") {{ rolloutId state wave waves upgraded remaining }} }}")
    };
    let started = iw
        .platform
        .gql(
            "mutation { startInstanceRollout(input: { version: \"1.5.0\", waveSize: 1, pauseSeconds: 1 }) { id } }",
            json!({}),
        )
        .await;
    let id = started.data()["startInstanceRollout"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // The platform subscribes first (its socket keeps what arrives while
    // the others are refused).
    let mut ws = subscribe(&iw.srv.url, token_of(&iw.platform), &q(&id)).await;
    for (who, c) in not_platform(iw) {
        let mut denied = subscribe(&iw.srv.url, token_of(c), &q(&id)).await;
        let ev = next_json(&mut denied).await;
        assert!(ev.to_string().contains("FORBIDDEN"), "{who}: {ev}");
        assert!(
            ev["payload"]["data"].is_null()
                || ev["payload"]["data"]["instanceRolloutProgress"].is_null(),
            "{who}: {ev}"
        );
    }
    // The platform hears where it was, then every wave, to its end.
    let mut seen = Vec::new();
    loop {
        let ev = next_json(&mut ws).await;
        if ev["type"] == "complete" {
            break;
        }
        let p = ev["payload"]["data"]["instanceRolloutProgress"].clone();
        assert_eq!(p["rolloutId"], json!(id), "{ev}");
        seen.push(p);
    }
    let last = seen.last().unwrap();
    assert_eq!(last["state"], "COMPLETED", "{seen:?}");
    assert_eq!(last["remaining"], 0, "{seen:?}");
    let waves: Vec<i64> = seen.iter().map(|p| p["wave"].as_i64().unwrap()).collect();
    assert!(
        waves.windows(2).all(|w| w[0] <= w[1]),
        "progress only moves forward: {waves:?}"
    );
    assert_eq!(seen[0]["state"], "RUNNING", "{seen:?}");
    assert!(seen.len() >= 3, "the start, each wave, the end: {seen:?}");
}

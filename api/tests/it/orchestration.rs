//! Onboarding end to end on real services: the control plane on Postgres
//! declares instances on a real Kubernetes 1.20 API server (with its
//! controller-manager and the harness kubelet), a real `dotmac orchestrate`
//! process reconciles them with tenants' secrets in a real OpenBao, and
//! tenants become active when their instances are Ready. Chaos: the
//! operator is SIGKILLed while 50 tenants are provisioned, and the API
//! server is restarted once.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dotmac_orchestrator::builders;
use dotmac_orchestrator::kube_cluster::RequestCounts;
use dotmac_orchestrator::testkit;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{
    LimitRange, Namespace, ResourceQuota, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::{Api, ListParams};
use kube::Client;
use serde_json::{json, Value};

use dotmac_api::service::directory::rollout::{rollout, RolloutPlan};

use crate::support::{unique, Backend, Client as GqlClient, TestServer};

fn vault_addr() -> String {
    std::env::var("DOTMAC_VAULT_ADDR").unwrap_or_else(|_| "http://127.0.0.1:8200".into())
}

fn vault_token() -> String {
    std::env::var("DOTMAC_VAULT_TOKEN").unwrap_or_else(|_| "root".into())
}

/// A `dotmac orchestrate` process on `shard`.
fn operator(shard: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_dotmac"))
        .arg("orchestrate")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DOTMAC_ORCHESTRATOR__KUBECONFIG", testkit::kubeconfig())
        .env("DOTMAC_ORCHESTRATOR__SHARD", shard)
        .env("DOTMAC_ORCHESTRATOR__CONCURRENCY", "8")
        // A rollout that does not come up in 8 s is rolled back.
        .env("DOTMAC_ORCHESTRATOR__PROGRESS_DEADLINE_SECS", "8")
        .env("DOTMAC_VAULT_ADDR", vault_addr())
        .env("DOTMAC_VAULT_TOKEN", vault_token())
        .env("DOTMAC_LOG", "warn,vaultrs=off,rustify=off")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("dotmac orchestrate starts")
}

/// Restarts the test API server: kills it, then `deploy/local/kubernetes.sh`
/// starts it again (etcd keeps the state).
fn restart_api_server() {
    let state =
        std::env::var("DOTMAC_KUBE_STATE").unwrap_or_else(|_| "/var/lib/dotmac/kubernetes".into());
    let pid = std::fs::read_to_string(format!("{state}/apiserver.pid"))
        .expect("the API server's pid file");
    let status = Command::new("kill")
        .arg("-9")
        .arg(pid.trim())
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_secs(1));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/local/kubernetes.sh");
    let out = Command::new("bash").arg(script).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Onboarding {
    srv: TestServer,
    admin: GqlClient,
    kube: Client,
    _kubelet: testkit::Kubelet,
}

impl Onboarding {
    async fn start(shard: &str) -> Onboarding {
        let kube = testkit::connect(Arc::new(RequestCounts::default()))
            .await
            .expect("the test API server");
        let kubelet = testkit::Kubelet::start(kube.clone()).await.unwrap();
        let shard = shard.to_owned();
        let srv = TestServer::start_with(Backend::Postgres, |c| {
            c.orchestrator.target = dotmac_api::config::OrchestratorTarget::Kubernetes;
            c.orchestrator.kubeconfig = testkit::kubeconfig().display().to_string();
            c.orchestrator.shard = shard;
        })
        .await;
        let admin = srv.login("admin@demo.dotmac.dev").await;
        Onboarding {
            srv,
            admin,
            kube,
            _kubelet: kubelet,
        }
    }

    async fn new_tenant(&self, tier: &str) -> String {
        let t = self
            .admin
            .gql(
                "mutation($n: String!, $t: ResourceTier) { createTenant(input: { name: $n, tier: $t }) { id } }",
                json!({ "n": unique("Onboarded ISP "), "t": tier }),
            )
            .await;
        let id = t.data()["createTenant"]["id"].as_str().unwrap().to_owned();
        self.admin
            .gql(
                "mutation($id: ID!) { provisionTenant(id: $id) { state } }",
                json!({ "id": id }),
            )
            .await
            .data();
        id
    }

    async fn tenant(&self, id: &str) -> Value {
        self.admin
            .gql(
                "query($id: ID!) { tenant(id: $id) { state stateReason tier instance { phase ready currentVersion namespace synced syncError blockingStep } } }",
                json!({ "id": id }),
            )
            .await
            .data()["tenant"]
            .clone()
    }

    async fn wait(
        &self,
        id: &str,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + within;
        loop {
            let t = self.tenant(id).await;
            if done(&t) {
                return t;
            }
            assert!(Instant::now() < until, "{id} never became {what}: {t}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Objects of kind `K` labelled with `tenant`, and the namespaces they are in.
    async fn children<K>(&self, tenant: &str) -> Vec<Option<String>>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        Api::<K>::all(self.kube.clone())
            .list(&ListParams::default().labels(&format!("{}={tenant}", builders::TENANT_LABEL)))
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| o.meta().namespace.clone())
            .collect()
    }
}

fn active_and_ready(t: &Value) -> bool {
    t["state"] == "ACTIVE" && t["instance"]["phase"] == "READY" && t["instance"]["ready"] == true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_tenants_onboard_through_operator_kills_and_an_api_server_restart() {
    let shard = unique("chaos");
    let w = Onboarding::start(&shard).await;
    let mut op = operator(&shard);
    let tiers = ["MICRO", "SMALL", "LARGE"];
    let mut tenants = Vec::new();
    let mut kills = 0;
    for i in 0..50 {
        tenants.push(w.new_tenant(tiers[i % 3]).await);
        // SIGKILL the operator every ten tenants, and start a new one.
        if i % 10 == 5 {
            op.kill().unwrap();
            op.wait().unwrap();
            kills += 1;
            tokio::time::sleep(Duration::from_millis(300)).await;
            op = operator(&shard);
        }
        if i == 25 {
            restart_api_server();
        }
    }
    // And once more while the last of them are still coming up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    op.kill().unwrap();
    op.wait().unwrap();
    kills += 1;
    op = operator(&shard);
    assert!(kills >= 5);

    for t in &tenants {
        w.wait(
            t,
            "active with a Ready instance",
            Duration::from_secs(240),
            active_and_ready,
        )
        .await;
    }
    // Exactly one of each child per tenant, every one in its own namespace.
    for t in &tenants {
        let ns = builders::namespace_for(t).unwrap();
        assert_eq!(w.children::<Namespace>(t).await.len(), 1, "{t}");
        for (kind, found) in [
            ("ResourceQuota", w.children::<ResourceQuota>(t).await),
            ("LimitRange", w.children::<LimitRange>(t).await),
            ("NetworkPolicy", w.children::<NetworkPolicy>(t).await),
            ("ServiceAccount", w.children::<ServiceAccount>(t).await),
            ("Secret", w.children::<Secret>(t).await),
            ("Deployment", w.children::<Deployment>(t).await),
            ("Service", w.children::<Service>(t).await),
        ] {
            let expected = if kind == "NetworkPolicy" { 2 } else { 1 };
            assert_eq!(found.len(), expected, "{t}: {kind} {found:?}");
            assert!(
                found.iter().all(|n| n.as_deref() == Some(ns.as_str())),
                "{t}: {kind} outside its namespace: {found:?}"
            );
        }
    }

    // Operators read an instance's objects as the cluster has them.
    let m = w
        .admin
        .gql(
            "query($id: ID!) { tenant(id: $id) { instance { manifests { kind namespace yaml } } } }",
            json!({ "id": tenants[1] }),
        )
        .await;
    let manifests = m.data()["tenant"]["instance"]["manifests"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(manifests.len(), 9, "every child: {manifests:?}");
    let secret = manifests.iter().find(|x| x["kind"] == "Secret").unwrap()["yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        secret.contains("[redacted]") && !secret.contains("managedFields"),
        "{secret}"
    );
    let deployment = manifests
        .iter()
        .find(|x| x["kind"] == "Deployment")
        .unwrap()["yaml"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        deployment.contains("availableReplicas: 1"),
        "the live object, status included: {deployment}"
    );

    // The lifecycle reaches the cluster: suspend scales to zero and keeps
    // the namespace; reactivate brings it back; a new tier is applied in
    // place; cancel deletes the instance through its finalizer.
    let t = &tenants[0];
    let ns = builders::namespace_for(t).unwrap();
    let deployments = Api::<Deployment>::namespaced(w.kube.clone(), &ns);
    w.admin
        .gql(
            "mutation($id: ID!) { suspendTenant(id: $id, reason: \"unpaid\") { state } }",
            json!({ "id": t }),
        )
        .await
        .data();
    w.wait(t, "suspended", Duration::from_secs(60), |v| {
        v["instance"]["phase"] == "SUSPENDED"
    })
    .await;
    assert_eq!(
        deployments
            .get(builders::WORKLOAD)
            .await
            .unwrap()
            .spec
            .unwrap()
            .replicas,
        Some(0)
    );
    w.admin
        .gql(
            "mutation($id: ID!) { reactivateTenant(id: $id) { state } }",
            json!({ "id": t }),
        )
        .await
        .data();
    w.wait(t, "back", Duration::from_secs(60), active_and_ready)
        .await;
    let quota = Api::<ResourceQuota>::namespaced(w.kube.clone(), &ns);
    let before = quota.get("tier-quota").await.unwrap();
    w.admin
        .gql(
            "mutation($id: ID!) { updateTenant(id: $id, input: { tier: LARGE }) { tier } }",
            json!({ "id": t }),
        )
        .await
        .data();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let q = quota.get("tier-quota").await.unwrap();
        if q.spec.as_ref().unwrap().hard.as_ref().unwrap()["limits.cpu"].0 == "4" {
            assert_eq!(q.metadata.uid, before.metadata.uid, "updated in place");
            break;
        }
        assert!(Instant::now() < until, "the tier never reached the quota");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // A new version in waves across every instance; then a version that
    // never comes up: its first wave is rolled back and the rollout stops
    // there, every later tenant left on the version it runs.
    let ctx = dotmac_api::caller::RequestCtx::system("rollout");
    let plan = |version: &str, wave_size| RolloutPlan {
        version: version.into(),
        wave_size,
        pause: Duration::from_millis(200),
        wave_deadline: Duration::from_secs(90),
    };
    let mut waves = Vec::new();
    let done = rollout(&w.srv.app.directory, &ctx, &plan("1.1.0", 20), |p| {
        waves.push(p.clone())
    })
    .await
    .unwrap();
    assert_eq!(done.stopped, None, "{waves:?}");
    assert!(
        done.upgraded >= 50 && done.remaining == 0 && waves.len() >= 3,
        "{waves:?}"
    );
    for t in &tenants {
        assert_eq!(
            w.tenant(t).await["instance"]["currentVersion"],
            "1.1.0",
            "{t}"
        );
    }
    let broken = rollout(&w.srv.app.directory, &ctx, &plan("1.2.0-broken", 2), |_| {})
        .await
        .unwrap();
    let why = broken
        .stopped
        .expect("the rollout stops at the rolled-back wave");
    assert!(why.contains("rolled back"), "{why}");
    assert_eq!((broken.wave, broken.upgraded), (1, 2));
    let mut still = 0;
    for t in &tenants {
        let i = w.tenant(t).await["instance"].clone();
        if i["currentVersion"] == "1.1.0" && i["phase"] != "DEGRADED" {
            still += 1;
        }
    }
    assert!(
        still >= tenants.len() - 2,
        "only the first wave moved: {still}"
    );

    w.admin
        .gql(
            "mutation($id: ID!) { cancelTenant(id: $id, reason: \"leaving\") { state } }",
            json!({ "id": t }),
        )
        .await
        .data();
    let namespaces = Api::<Namespace>::all(w.kube.clone());
    let until = Instant::now() + Duration::from_secs(120);
    while namespaces.get_opt(&ns).await.unwrap().is_some() {
        assert!(
            Instant::now() < until,
            "the cancelled tenant's namespace was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Nobody else lost anything.
    assert_eq!(w.children::<Deployment>(&tenants[1]).await.len(), 1);

    // Tidy the shared API server: the other tenants (and the demo's, whose
    // instances the seed provisioned on this shard) leave too.
    let all = w
        .admin
        .gql(
            "{ tenants(first: 100) { edges { node { id state } } } }",
            json!({}),
        )
        .await;
    let mut leaving: Vec<String> = tenants[1..].to_vec();
    for e in all.data()["tenants"]["edges"].as_array().unwrap() {
        let id = e["node"]["id"].as_str().unwrap().to_owned();
        if !tenants.contains(&id)
            && ["ACTIVE", "SUSPENDED"].contains(&e["node"]["state"].as_str().unwrap())
        {
            leaving.push(id);
        }
    }
    for t in &leaving {
        w.admin
            .gql(
                "mutation($id: ID!) { cancelTenant(id: $id, reason: \"test done\") { state } }",
                json!({ "id": t }),
            )
            .await;
    }
    let until = Instant::now() + Duration::from_secs(180);
    for t in &leaving {
        let ns = builders::namespace_for(t).unwrap();
        while namespaces.get_opt(&ns).await.unwrap().is_some() && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    op.kill().unwrap();
    op.wait().unwrap();
    drop(w.srv);
}

/// A tenant whose instance never reports (here: the cluster cannot be
/// reached) is failed once the onboarding deadline passes, the reason naming
/// what is not done; nothing fails it before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn onboarding_past_its_deadline_fails_the_tenant_naming_the_step() {
    let dir = tempfile::tempdir().unwrap();
    // A well-formed kubeconfig whose server does not answer.
    let unreachable = std::fs::read_to_string(testkit::kubeconfig())
        .unwrap()
        .replace("https://127.0.0.1:6443", "https://127.0.0.1:1");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, unreachable).unwrap();
    let srv = TestServer::start_with(Backend::Sqlite, |c| {
        c.orchestrator.target = dotmac_api::config::OrchestratorTarget::Kubernetes;
        c.orchestrator.kubeconfig = kubeconfig.display().to_string();
        c.orchestrator.shard = unique("deadline");
    })
    .await;
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let t = admin
        .gql(
            "mutation { createTenant(input: { name: \"Stuck ISP\" }) { id } }",
            json!({}),
        )
        .await;
    let id = t.data()["createTenant"]["id"].as_str().unwrap().to_owned();
    admin
        .gql(
            "mutation($id: ID!) { provisionTenant(id: $id) { state } }",
            json!({ "id": id }),
        )
        .await
        .data();
    let state = |admin: GqlClient, id: String| async move {
        admin
            .gql(
                "query($id: ID!) { tenant(id: $id) { state stateReason instance { syncError } } }",
                json!({ "id": id }),
            )
            .await
            .data()["tenant"]
            .clone()
    };
    // The sync fails and says so; within the deadline the tenant waits.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let s = state(admin.clone(), id.clone()).await;
        if s["instance"]["syncError"].is_string() {
            assert_eq!(s["state"], "PROVISIONING", "{s}");
            break;
        }
        assert!(Instant::now() < until, "the sync never failed: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(11)).await;
    assert_eq!(
        state(admin.clone(), id.clone()).await["state"],
        "PROVISIONING"
    );
    // Past it: failed within one check, naming the deadline and the step.
    srv.clock.advance(chrono::TimeDelta::seconds(301));
    let admin = srv.login("admin@demo.dotmac.dev").await;
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let s = state(admin.clone(), id.clone()).await;
        if s["state"] == "FAILED" {
            let why = s["stateReason"].as_str().unwrap();
            assert!(
                why.contains("not Ready within 300 s") && why.contains("sync:"),
                "{why}"
            );
            break;
        }
        assert!(Instant::now() < until, "never failed: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

//! Reconcile scenarios against kube-rs's tower-test API-server verifier:
//! the real [`KubeCluster`] client speaks HTTP to a responder that answers
//! like an API server and records every request, so each scenario asserts
//! the exact requests one reconcile makes (finalizer first, every child by
//! server-side apply with the one field manager and force, one status
//! write, nothing when nothing changed), and what it does when the server
//! refuses. The real API server runs the same code in `tests/cluster`.

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use dotmac_schema::ManualClock;
use http::{Request, Response};
use kube::client::Body;
use kube::Resource;
use serde_json::{json, Value};

use crate::builders::{self, Child, ChildKind, WORKLOAD};
use crate::kube_cluster::KubeCluster;
use crate::reconcile::{reconcile, Deps, Outcome};
use crate::resource::{
    ConditionType, InstanceTier, Phase, TenantInstance, TenantInstanceSpec, TenantInstanceStatus,
    FINALIZER,
};
use crate::secrets::local::LocalSecrets;
use crate::secrets::SecretVault;
use crate::{Error, Settings};

const TENANT: &str = "ten_0123456789abcdef0123456789abcdef";
const INSTANCES: &str = "/apis/dotmac.io/v1alpha1/tenantinstances";

/// One request as the API server received it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    query: String,
    body: Value,
}

impl Seen {
    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path == path
    }
}

/// How the verifier answers: a status and a JSON body.
type Responder = Box<dyn Fn(&Seen) -> (u16, Value) + Send + Sync>;

fn not_found(what: &str) -> (u16, Value) {
    (
        404,
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{what} not found"), "reason": "NotFound", "code": 404 }),
    )
}

fn ok_status() -> (u16, Value) {
    (
        200,
        json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success" }),
    )
}

fn spec() -> TenantInstanceSpec {
    TenantInstanceSpec {
        tenant_id: TENANT.into(),
        tier: InstanceTier::Small,
        version: "1.0.0".into(),
        image: "ghcr.io/dotmac/isp-framework".into(),
        domain: Some("acme.isp.example".into()),
        suspended: false,
        deletion_protection: true,
        secrets_generation: 0,
        abandon_cleanup: false,
    }
}

fn instance(
    spec: TenantInstanceSpec,
    finalizer: bool,
    status: Option<TenantInstanceStatus>,
) -> TenantInstance {
    let mut inst = TenantInstance::new(&builders::instance_name(TENANT).unwrap(), spec);
    inst.meta_mut().uid = Some("uid-1".into());
    inst.meta_mut().generation = Some(1);
    inst.meta_mut().resource_version = Some("7".into());
    if finalizer {
        inst.meta_mut().finalizers = Some(vec![FINALIZER.into()]);
    }
    inst.status = status;
    inst
}

/// The API path of a child.
fn path_of(child: &Child) -> String {
    let ar = child.kind.api_resource();
    let root = if ar.group.is_empty() {
        format!("/api/{}", ar.version)
    } else {
        format!("/apis/{}/{}", ar.group, ar.version)
    };
    match &child.namespace {
        Some(ns) => format!("{root}/namespaces/{ns}/{}/{}", ar.plural, child.name),
        None => format!("{root}/{}/{}", ar.plural, child.name),
    }
}

fn namespace() -> String {
    builders::namespace_for(TENANT).unwrap()
}

fn deployment_path() -> String {
    format!(
        "/apis/apps/v1/namespaces/{}/deployments/{WORKLOAD}",
        namespace()
    )
}

fn namespace_path() -> String {
    format!("/api/v1/namespaces/{}", namespace())
}

/// A Deployment as the API server reports it: `replicas` wanted, all of
/// them updated and available, observed.
fn deployment(replicas: i32, version: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": WORKLOAD, "namespace": namespace(), "generation": 2 },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": WORKLOAD } },
            "template": { "metadata": { "labels": { "app.kubernetes.io/version": version } },
                          "spec": { "containers": [] } }
        },
        "status": { "observedGeneration": 2, "replicas": replicas,
                    "updatedReplicas": replicas, "availableReplicas": replicas }
    })
}

/// Answers what every scenario needs the same way: applies echo the
/// object, instance patches echo the instance with the patch merged.
fn api_server(inst: &TenantInstance, specific: Responder) -> Responder {
    let base = serde_json::to_value(inst).unwrap();
    let name = inst.meta().name.clone().unwrap();
    Box::new(move |seen: &Seen| {
        let (status, body) = specific(seen);
        if status != 0 {
            return (status, body);
        }
        let instance_path = format!("{INSTANCES}/{name}");
        if seen.method == "PATCH" && seen.path.starts_with(&instance_path) {
            let mut merged = base.clone();
            merge(&mut merged, &seen.body);
            return (200, merged);
        }
        if seen.method == "PATCH" {
            return (200, seen.body.clone());
        }
        if seen.method == "DELETE" {
            return ok_status();
        }
        not_found(&seen.path)
    })
}

/// JSON merge patch (RFC 7386), as the API server applies one.
fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

/// Runs one reconcile of `inst` against the verifier; answers its outcome
/// and every request, in order.
async fn run(
    inst: &TenantInstance,
    vault: &dyn SecretVault,
    respond: Responder,
) -> (Result<Outcome, Error>, Vec<Seen>) {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let server = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some((request, reply)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap();
            let s = Seen {
                method: parts.method.to_string(),
                path: parts.uri.path().to_owned(),
                query: parts.uri.query().unwrap_or_default().to_owned(),
                body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            };
            let (status, answer) = respond(&s);
            seen.push(s);
            reply.send_response(
                Response::builder()
                    .status(status)
                    .body(Body::from(serde_json::to_vec(&answer).unwrap()))
                    .unwrap(),
            );
        }
        seen
    });
    let cluster = KubeCluster::new(kube::Client::new(service, "default"), None);
    let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap());
    let settings = Settings::default();
    let outcome = reconcile(
        inst,
        &Deps {
            cluster: &cluster,
            vault,
            settings: &settings,
            clock: &clock,
        },
    )
    .await;
    // The client gone, the verifier's stream ends.
    drop(cluster);
    (outcome, server.await.unwrap())
}

fn vault() -> (tempfile::TempDir, Arc<LocalSecrets>) {
    let dir = tempfile::tempdir().unwrap();
    let vault = Arc::new(LocalSecrets::open(&dir.path().join("secrets")).unwrap());
    (dir, vault)
}

/// The children a reconcile of `spec` applies, in order.
async fn children_of(spec: &TenantInstanceSpec, vault: &dyn SecretVault) -> Vec<Child> {
    let inst = instance(spec.clone(), true, None);
    let secrets = vault.ensure(TENANT, spec.secrets_generation).await.unwrap();
    builders::children(
        spec,
        &spec.version,
        &secrets,
        &Settings::default(),
        inst.controller_owner_ref(&()).as_ref(),
    )
    .unwrap()
}

fn status_written(seen: &[Seen]) -> Vec<TenantInstanceStatus> {
    seen.iter()
        .filter(|s| s.method == "PATCH" && s.path.ends_with("/status"))
        .map(|s| serde_json::from_value(s.body["status"].clone()).unwrap())
        .collect()
}

fn no_specifics() -> Responder {
    Box::new(|_| (0, Value::Null))
}

#[tokio::test]
async fn a_new_instance_gets_its_finalizer_then_every_child_applied_then_one_status_write() {
    let (_dir, vault) = vault();
    let inst = instance(spec(), false, None);
    let (outcome, seen) = run(&inst, vault.as_ref(), api_server(&inst, no_specifics())).await;
    let outcome = outcome.unwrap();
    assert!(matches!(outcome, Outcome::Requeue(_)), "{outcome:?}");

    // 1. The finalizer, before anything exists that it must clean up.
    let name = builders::instance_name(TENANT).unwrap();
    assert!(
        seen[0].is("PATCH", &format!("{INSTANCES}/{name}")),
        "{seen:?}"
    );
    assert_eq!(seen[0].body["metadata"]["finalizers"], json!([FINALIZER]));
    assert_eq!(seen[0].body["metadata"]["resourceVersion"], "7");
    // 2. Every child, in apply order, server-side applied with the one
    // field manager and force.
    let children = children_of(&spec(), vault.as_ref()).await;
    let applies = &seen[1..=children.len()];
    for (child, s) in children.iter().zip(applies) {
        assert!(s.is("PATCH", &path_of(child)), "{:?} vs {s:?}", child.kind);
        assert!(
            s.query.contains("fieldManager=dotmac-orchestrator") && s.query.contains("force=true"),
            "{s:?}"
        );
        assert_eq!(s.body["kind"], child.object["kind"]);
    }
    assert_eq!(children[0].kind, ChildKind::Namespace);
    assert_eq!(children.last().unwrap().kind, ChildKind::Ingress);
    // 3. The workload read, then one status write; nothing else.
    assert!(seen[children.len() + 1].is("GET", &deployment_path()));
    assert_eq!(seen.len(), children.len() + 3, "{seen:#?}");
    let written = status_written(&seen);
    assert_eq!(written.len(), 1);
    let st = &written[0];
    assert_eq!(st.phase, Phase::Provisioning);
    assert_eq!(st.observed_generation, 1);
    for ok in [
        ConditionType::QuotaApplied,
        ConditionType::NetworkIsolated,
        ConditionType::SecretsSynced,
    ] {
        assert_eq!(st.condition(ok).unwrap().status, "True", "{ok:?}");
    }
    let ready = st.condition(ConditionType::Ready).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "WorkloadAvailable")
    );
    assert_eq!(st.children.len(), children.len());
}

#[tokio::test]
async fn a_pass_that_changes_nothing_applies_nothing_and_writes_no_status() {
    let (_dir, vault) = vault();
    let inst = instance(spec(), false, None);
    let (_, first) = run(&inst, vault.as_ref(), api_server(&inst, no_specifics())).await;
    let status = status_written(&first).pop().unwrap();
    let again = instance(spec(), true, Some(status));
    let (outcome, seen) = run(&again, vault.as_ref(), api_server(&again, no_specifics())).await;
    outcome.unwrap();
    assert_eq!(seen.len(), 1, "only the workload read: {seen:#?}");
    assert!(seen[0].is("GET", &deployment_path()));
}

#[tokio::test]
async fn the_workload_available_makes_it_ready_and_suspension_scales_to_zero() {
    let (_dir, vault) = vault();
    let inst = instance(spec(), true, None);
    let serving: Responder = Box::new(|s: &Seen| {
        if s.is("GET", &deployment_path()) {
            (200, deployment(1, "1.0.0"))
        } else {
            (0, Value::Null)
        }
    });
    let (_, seen) = run(&inst, vault.as_ref(), api_server(&inst, serving)).await;
    let ready = status_written(&seen).pop().unwrap();
    assert_eq!(ready.phase, Phase::Ready, "{ready:?}");
    assert_eq!(ready.current_version.as_deref(), Some("1.0.0"));
    assert_eq!(
        ready.condition(ConditionType::Ready).unwrap().status,
        "True"
    );

    // Suspended: the spec changed, so every child is applied again, the
    // Deployment with zero replicas; the Ingress is no longer wanted.
    let suspended_spec = TenantInstanceSpec {
        suspended: true,
        domain: None,
        ..spec()
    };
    let suspended = instance(suspended_spec, true, Some(ready.clone()));
    let scaled_down: Responder = Box::new(|s: &Seen| {
        if s.is("GET", &deployment_path()) {
            (200, deployment(0, "1.0.0"))
        } else {
            (0, Value::Null)
        }
    });
    let (outcome, seen) = run(
        &suspended,
        vault.as_ref(),
        api_server(&suspended, scaled_down),
    )
    .await;
    outcome.unwrap();
    let applied = seen
        .iter()
        .find(|s| s.is("PATCH", &deployment_path()))
        .expect("the Deployment applied");
    assert_eq!(applied.body["spec"]["replicas"], 0, "{:?}", applied.body);
    let ingress = format!(
        "/apis/networking.k8s.io/v1/namespaces/{}/ingresses/{WORKLOAD}",
        namespace()
    );
    assert!(
        seen.iter().any(|s| s.is("DELETE", &ingress)),
        "the Ingress recorded in the status is swept: {seen:#?}"
    );
    assert!(
        !seen
            .iter()
            .any(|s| s.method == "DELETE" && s.path != ingress),
        "nothing else is deleted: {seen:#?}"
    );
    let st = status_written(&seen).pop().unwrap();
    assert_eq!(st.phase, Phase::Suspended);
    let ready = st.condition(ConditionType::Ready).unwrap();
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("True", "Suspended")
    );
}

#[tokio::test]
async fn a_refused_apply_stops_there_and_the_status_names_the_step_and_the_servers_words() {
    let (_dir, vault) = vault();
    let inst = instance(spec(), true, None);
    let refuse: Responder = Box::new(|s: &Seen| {
        if s.method == "PATCH" && s.path.contains("/networkpolicies/") {
            (
                403,
                json!({ "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                        "message": "networkpolicies is forbidden: admission denied by policy-x",
                        "reason": "Forbidden", "code": 403 }),
            )
        } else {
            (0, Value::Null)
        }
    });
    let (outcome, seen) = run(&inst, vault.as_ref(), api_server(&inst, refuse)).await;
    let err = outcome.unwrap_err().to_string();
    assert!(err.contains("policy-x"), "{err}");
    assert!(
        !seen.iter().any(|s| s.path.contains("/deployments/")),
        "nothing after the refused step is applied: {seen:#?}"
    );
    let st = status_written(&seen)
        .pop()
        .expect("the failure is reported");
    let step = st.condition(ConditionType::NetworkIsolated).unwrap();
    assert_eq!(
        (step.status.as_str(), step.reason.as_str()),
        ("False", "ApplyFailed")
    );
    assert!(step.message.contains("policy-x"), "{}", step.message);
    let ready = st.condition(ConditionType::Ready).unwrap();
    assert_eq!(ready.reason, "NetworkIsolated");
    assert_eq!(st.phase, Phase::Provisioning);
}

#[tokio::test]
async fn a_spec_that_cannot_be_satisfied_is_reported_and_nothing_is_applied() {
    let (_dir, vault) = vault();
    let bad = TenantInstanceSpec {
        domain: Some("Not A Host/..".into()),
        ..spec()
    };
    let inst = instance(bad, true, None);
    let (outcome, seen) = run(&inst, vault.as_ref(), api_server(&inst, no_specifics())).await;
    outcome.unwrap();
    assert_eq!(seen.len(), 1, "one status write: {seen:#?}");
    let st = status_written(&seen).pop().unwrap();
    let ready = st.condition(ConditionType::Ready).unwrap();
    assert_eq!(ready.reason, "InvalidSpec");
    assert!(ready.message.contains("spec.domain"), "{}", ready.message);
}

fn terminating(spec: TenantInstanceSpec) -> TenantInstance {
    let status = TenantInstanceStatus {
        current_version: Some("1.0.0".into()),
        namespace: Some(namespace()),
        ..Default::default()
    };
    let mut inst = instance(spec, true, Some(status));
    let asked = Utc
        .with_ymd_and_hms(2026, 12, 2, 11, 0, 0)
        .unwrap()
        .timestamp();
    inst.meta_mut().deletion_timestamp =
        Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::from_second(asked).unwrap(),
        ));
    inst
}

#[tokio::test]
async fn cleanup_scales_down_revokes_deletes_the_namespace_waits_and_releases() {
    let (_dir, vault) = vault();
    let before = vault.ensure(TENANT, 0).await.unwrap();
    let inst = terminating(TenantInstanceSpec {
        deletion_protection: false,
        ..spec()
    });
    // The namespace exists until it is deleted.
    let deleted = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = deleted.clone();
    let cluster_state: Responder = Box::new(move |s: &Seen| {
        use std::sync::atomic::Ordering;
        if s.is("GET", &namespace_path()) {
            if flag.load(Ordering::SeqCst) {
                return not_found("namespace");
            }
            return (
                200,
                json!({ "apiVersion": "v1", "kind": "Namespace",
                                 "metadata": { "name": namespace() } }),
            );
        }
        if s.is("DELETE", &namespace_path()) {
            flag.store(true, Ordering::SeqCst);
            return ok_status();
        }
        if s.is("GET", &deployment_path()) {
            return (200, deployment(1, "1.0.0"));
        }
        (0, Value::Null)
    });
    let (outcome, seen) = run(&inst, vault.as_ref(), api_server(&inst, cluster_state)).await;
    assert_eq!(outcome.unwrap(), Outcome::Released);
    let steps: Vec<(String, String)> = seen
        .iter()
        .map(|s| (s.method.clone(), s.path.clone()))
        .collect();
    let name = builders::instance_name(TENANT).unwrap();
    let want = [
        ("GET", namespace_path()),
        ("GET", deployment_path()),
        ("PATCH", deployment_path()),
        ("GET", namespace_path()),
        ("DELETE", namespace_path()),
        ("GET", namespace_path()),
        ("PATCH", format!("{INSTANCES}/{name}")),
    ]
    .map(|(m, p)| (m.to_owned(), p));
    assert_eq!(steps, want);
    // Scaled to zero first; the finalizer released last, by compare-and-set.
    assert_eq!(seen[2].body["spec"]["replicas"], 0);
    assert_eq!(seen[6].body["metadata"]["finalizers"], json!([]));
    assert_eq!(seen[6].body["metadata"]["resourceVersion"], "7");
    // The tenant's secrets are revoked.
    assert_eq!(vault.version(TENANT, before.version).await.unwrap(), None);
}

#[tokio::test]
async fn cleanup_behind_deletion_protection_deletes_nothing_and_says_why() {
    let (_dir, vault) = vault();
    let kept = vault.ensure(TENANT, 0).await.unwrap();
    let inst = terminating(spec());
    let (outcome, seen) = run(&inst, vault.as_ref(), api_server(&inst, no_specifics())).await;
    assert!(matches!(outcome.unwrap(), Outcome::Requeue(_)));
    assert!(
        seen.iter().all(|s| s.method != "DELETE"),
        "nothing deleted: {seen:#?}"
    );
    assert_eq!(seen.len(), 1, "one status write: {seen:#?}");
    let st = status_written(&seen).pop().unwrap();
    assert_eq!(st.phase, Phase::Terminating);
    let cleaned = st.condition(ConditionType::CleanedUp).unwrap();
    assert_eq!(
        (cleaned.status.as_str(), cleaned.reason.as_str()),
        ("False", "DeletionProtected")
    );
    assert_eq!(
        vault.version(TENANT, kept.version).await.unwrap(),
        Some(kept)
    );
}

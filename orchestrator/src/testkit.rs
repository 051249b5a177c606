//! For tests and benchmarks against the real API server of
//! `deploy/local/kubernetes.sh`: a connection with the CRD installed, and a
//! harness kubelet. The API server runs no kubelet, so the harness plays one:
//! a Node, every pod of an instance bound to it and marked Running and Ready
//! (so the real Deployment and ReplicaSet controllers make Deployments
//! available), and pods being deleted removed at once. A pod whose image tag
//! contains `broken` is bound but never becomes Ready: that is how tests make
//! an upgrade miss its progress deadline.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, CustomResourceExt, ResourceExt};
use serde_json::json;

use crate::builders::{MANAGED_BY, MANAGER};
use crate::kube_cluster::{self, RequestCounts};
use crate::resource::TenantInstance;
use crate::Error;

/// The test OpenBao of `deploy/local/openbao.sh` (`DOTMAC_VAULT_ADDR`,
/// `DOTMAC_VAULT_TOKEN`), and a store of tenants' secrets in it.
pub fn openbao_settings() -> crate::secrets::openbao::OpenBaoSettings {
    crate::secrets::openbao::OpenBaoSettings {
        address: std::env::var("DOTMAC_VAULT_ADDR")
            .unwrap_or_else(|_| "http://127.0.0.1:8200".into()),
        token: crate::secrets::SecretValue::new(
            std::env::var("DOTMAC_VAULT_TOKEN").unwrap_or_else(|_| "root".into()),
        ),
        mount: "secret".into(),
        max_versions: 5,
        scope: Default::default(),
    }
}

/// The harness's node.
pub const NODE: &str = "dotmac-harness-node";

/// The kubeconfig of the test API server.
pub fn kubeconfig() -> PathBuf {
    std::env::var_os("DOTMAC_KUBECONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/dotmac/kubernetes/kubeconfig"))
}

/// A client of the test API server (requests counted in `counts`), with the
/// `TenantInstance` CRD applied and established.
pub async fn connect(counts: Arc<RequestCounts>) -> Result<Client, Error> {
    let config = kube_cluster::config(Some(&kubeconfig())).await?;
    let client = kube_cluster::client(config, counts).await?;
    install_crd(&client).await?;
    Ok(client)
}

/// Applies the CRD and waits until it is served.
pub async fn install_crd(client: &Client) -> Result<(), Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = TenantInstance::crd();
    crds.patch(
        &crd.name_any(),
        &PatchParams::apply("dotmac-testkit").force(),
        &Patch::Apply(&crd),
    )
    .await?;
    for _ in 0..100 {
        if crate::controller::check_crd(client).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    crate::controller::check_crd(client).await
}

/// The harness kubelet; stops when dropped.
pub struct Kubelet {
    task: tokio::task::JoinHandle<()>,
    /// Pods it marked Ready.
    pub readied: Arc<AtomicU32>,
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Kubelet {
    pub async fn start(client: Client) -> Result<Kubelet, Error> {
        let nodes: Api<Node> = Api::all(client.clone());
        let node = json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": NODE, "labels": { "kubernetes.io/hostname": NODE } },
        });
        nodes
            .patch(
                NODE,
                &PatchParams::apply("dotmac-testkit").force(),
                &Patch::Apply(&node),
            )
            .await?;
        let now = chrono::Utc::now().to_rfc3339();
        nodes
            .patch_status(
                NODE,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": {
                    "capacity": { "cpu": "256", "memory": "1024Gi", "pods": "5000" },
                    "allocatable": { "cpu": "256", "memory": "1024Gi", "pods": "5000" },
                    "conditions": [{ "type": "Ready", "status": "True", "reason": "KubeletReady",
                        "message": "harness kubelet", "lastHeartbeatTime": now, "lastTransitionTime": now }],
                }})),
            )
            .await?;
        let readied = Arc::new(AtomicU32::new(0));
        let counter = readied.clone();
        let task = tokio::spawn(async move {
            let pods: Api<Pod> = Api::all(client.clone());
            let selector = format!("{MANAGED_BY}={MANAGER}");
            let mut events = watcher(pods, watcher::Config::default().labels(&selector))
                .default_backoff()
                .applied_objects()
                .boxed();
            while let Some(event) = events.next().await {
                let Ok(pod) = event else { continue };
                let client = client.clone();
                let counter = counter.clone();
                // Each pod on its own task: one slow call never holds up the rest.
                tokio::spawn(async move {
                    if let Err(e) = play_kubelet(&client, &pod, &counter).await {
                        tracing::debug!(pod = %pod.name_any(), error = %e, "harness kubelet step failed; the next event retries");
                    }
                });
            }
        });
        Ok(Kubelet { task, readied })
    }
}

async fn play_kubelet(client: &Client, pod: &Pod, readied: &AtomicU32) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    if pod.metadata.deletion_timestamp.is_some() {
        // What a kubelet does once the containers stopped: confirm deletion.
        match pods
            .delete(&name, &DeleteParams::default().grace_period(0))
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(e.into()),
        }
        return Ok(());
    }
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.node_name.is_none() {
        let binding = Binding {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(ns.clone()),
                ..Default::default()
            },
            target: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Node".into()),
                name: Some(NODE.into()),
                ..Default::default()
            },
        };
        let body = serde_json::to_vec(&binding).map_err(|e| Error::Invalid {
            field: "binding",
            reason: e.to_string(),
        })?;
        let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(body)
            .map_err(|e| Error::Invalid {
                field: "binding",
                reason: e.to_string(),
            })?;
        match client.request_text(req).await {
            Ok(_) => {}
            // Bound meanwhile by an earlier event's task.
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        // The binding's own watch event carries on from here.
        return Ok(());
    }
    let image = spec
        .containers
        .first()
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    let ready_already = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let broken = image
        .rsplit(':')
        .next()
        .is_some_and(|tag| tag.contains("broken"));
    if ready_already || (broken && running) {
        return Ok(());
    }
    let now = chrono::Utc::now().to_rfc3339();
    let ready = if broken { "False" } else { "True" };
    let octet = (readied.load(Ordering::Relaxed) % 250) + 2;
    let containers: Vec<serde_json::Value> = spec
        .containers
        .iter()
        .map(|c| {
            json!({
                "name": c.name, "image": c.image, "imageID": "", "ready": !broken, "started": true,
                "restartCount": 0, "state": { "running": { "startedAt": now } },
            })
        })
        .collect();
    pods.patch_status(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({ "status": {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": format!("10.244.0.{octet}"),
            "startTime": now,
            "conditions": [
                { "type": "Initialized", "status": "True", "lastTransitionTime": now },
                { "type": "PodScheduled", "status": "True", "lastTransitionTime": now },
                { "type": "ContainersReady", "status": ready, "lastTransitionTime": now },
                { "type": "Ready", "status": ready, "lastTransitionTime": now },
            ],
            "containerStatuses": containers,
        }})),
    )
    .await?;
    if !broken {
        readied.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// How many objects of kind `K` carry the tenant label `tenant`, anywhere
/// in the cluster.
pub async fn count_labelled<K>(client: &Client, tenant: &str) -> Result<usize, Error>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let api: Api<K> = Api::all(client.clone());
    let selector = format!("{}={tenant}", crate::builders::TENANT_LABEL);
    Ok(api
        .list(&kube::api::ListParams::default().labels(&selector))
        .await?
        .items
        .len())
}

//! The Kubernetes side of both ports: children server-side applied by one
//! field manager with force, the workload read from the controller's cache
//! (no request), status written with one merge patch, and instances declared
//! by the control plane under its own field manager. Every request goes
//! through a counting layer, so benchmarks and tests see what it costs.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
use kube::client::ClientBuilder;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Config, Resource, ResourceExt};
use serde_json::json;

use crate::builders::{self, Child, ChildKind, MANAGER, WORKLOAD};
use crate::cluster::{shown, Cluster, Instances, Manifest, WorkloadState};
use crate::resource::{
    ChildRef, TenantInstance, TenantInstanceSpec, TenantInstanceStatus, FINALIZER,
};
use crate::Error;

/// The control plane's field manager for `TenantInstance` specs: distinct
/// from the controller's, which owns the children and the status.
pub const CONTROL_PLANE_MANAGER: &str = "dotmac-control-plane";

/// Requests made through one client, by kind.
#[derive(Debug, Default)]
pub struct RequestCounts {
    pub writes: AtomicU64,
    pub reads: AtomicU64,
    pub watches: AtomicU64,
    /// Writes by method and resource (`PATCH secrets`, `PATCH tenantinstances/status`).
    pub writes_by_resource: std::sync::Mutex<std::collections::BTreeMap<String, u64>>,
}

/// `PATCH tenantinstances/status` of `PATCH /apis/dotmac.io/v1alpha1/tenantinstances/x/status`.
fn resource_of(method: &http::Method, path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // /api/v1/... or /apis/<group>/<version>/...
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..).unwrap_or_default(),
        _ => parts.get(3..).unwrap_or_default(),
    };
    let rest = match rest {
        ["namespaces", _, tail @ ..] if !tail.is_empty() => tail,
        other => other,
    };
    let resource = match rest {
        [kind, _, sub, ..] => format!("{kind}/{sub}"),
        [kind, ..] => (*kind).to_owned(),
        [] => String::new(),
    };
    format!("{method} {resource}")
}

impl RequestCounts {
    /// Writes and one-shot reads: what a reconcile costs the API server
    /// (long-lived watches are counted apart).
    pub fn requests(&self) -> u64 {
        self.writes.load(Ordering::Relaxed) + self.reads.load(Ordering::Relaxed)
    }
}

/// A client whose every request is counted in `counts`.
pub async fn client(config: Config, counts: Arc<RequestCounts>) -> Result<Client, Error> {
    let layer = tower::util::MapRequestLayer::new(move |req: http::Request<kube::client::Body>| {
        let counter = if req.method() == http::Method::GET {
            if req.uri().query().is_some_and(|q| q.contains("watch=true")) {
                &counts.watches
            } else {
                &counts.reads
            }
        } else {
            let key = resource_of(req.method(), req.uri().path());
            *counts
                .writes_by_resource
                .lock()
                .expect("counts lock")
                .entry(key)
                .or_default() += 1;
            &counts.writes
        };
        counter.fetch_add(1, Ordering::Relaxed);
        req
    });
    Ok(ClientBuilder::try_from(config)?.with_layer(&layer).build())
}

/// The configuration of a kubeconfig file, or (without one) the usual
/// inference: `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
pub async fn config(kubeconfig: Option<&Path>) -> Result<Config, Error> {
    let invalid = |reason: String| Error::Invalid {
        field: "kubernetes.kubeconfig",
        reason,
    };
    match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path)
                .map_err(|e| invalid(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|e| invalid(e.to_string()))
        }
        None => Config::infer().await.map_err(|e| invalid(e.to_string())),
    }
}

/// A client of the cluster `kubeconfig` names (or the inferred one), its
/// requests counted nowhere: what the control plane and `dotmac orchestrate` use.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, Error> {
    client(config(kubeconfig).await?, Default::default()).await
}

/// Both ports on one client.
#[derive(Clone)]
pub struct KubeCluster {
    client: Client,
    /// The controller's cache of the instances' Deployments, when it runs.
    deployments: Option<Store<Deployment>>,
    /// The shard label given to the instances this side declares.
    shard: Option<String>,
}

impl KubeCluster {
    pub fn new(client: Client, deployments: Option<Store<Deployment>>) -> KubeCluster {
        KubeCluster {
            client,
            deployments,
            shard: None,
        }
    }

    /// Instances declared through this handle carry `dotmac.io/shard=<shard>`.
    pub fn with_shard(mut self, shard: Option<String>) -> KubeCluster {
        self.shard = shard;
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn api(&self, kind: ChildKind, namespace: Option<&str>) -> Api<DynamicObject> {
        let ar = kind.api_resource();
        match namespace {
            Some(ns) => Api::namespaced_with(self.client.clone(), ns, &ar),
            None => Api::all_with(self.client.clone(), &ar),
        }
    }

    fn instances(&self) -> Api<TenantInstance> {
        Api::all(self.client.clone())
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// The workload as a Deployment says it.
pub fn workload_of(d: &Deployment) -> WorkloadState {
    let spec = d.spec.as_ref();
    let status = d.status.clone().unwrap_or_default();
    let generation = d.metadata.generation.unwrap_or(0);
    WorkloadState {
        desired_replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        total_replicas: status.replicas.unwrap_or(0),
        available_replicas: status.available_replicas.unwrap_or(0),
        updated_replicas: status.updated_replicas.unwrap_or(0),
        observed: status.observed_generation.unwrap_or(0) >= generation,
        deadline_exceeded: status.conditions.unwrap_or_default().iter().any(|c| {
            c.type_ == "Progressing"
                && c.status == "False"
                && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
        }),
        version: spec
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.as_ref())
            .and_then(|l| l.get("app.kubernetes.io/version").cloned()),
    }
}

#[async_trait::async_trait]
impl Cluster for KubeCluster {
    async fn apply(&self, child: &Child) -> Result<(), Error> {
        let api = self.api(child.kind, child.namespace.as_deref());
        api.patch(
            &child.name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&child.object),
        )
        .await?;
        Ok(())
    }

    async fn delete_child(&self, child: &ChildRef) -> Result<(), Error> {
        let kind = ChildKind::parse(&child.kind).ok_or_else(|| Error::Invalid {
            field: "status.children.kind",
            reason: format!("{:?} is not a kind this controller applies", child.kind),
        })?;
        match self
            .api(kind, child.namespace.as_deref())
            .delete(&child.name, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn workload(&self, namespace: &str) -> Result<Option<WorkloadState>, Error> {
        let deployment = match &self.deployments {
            Some(store) => store
                .get(&ObjectRef::new(WORKLOAD).within(namespace))
                .map(|d| (*d).clone()),
            None => {
                Api::<Deployment>::namespaced(self.client.clone(), namespace)
                    .get_opt(WORKLOAD)
                    .await?
            }
        };
        Ok(deployment.as_ref().map(workload_of))
    }

    async fn namespace_present(&self, namespace: &str) -> Result<bool, Error> {
        Ok(Api::<Namespace>::all(self.client.clone())
            .get_opt(namespace)
            .await?
            .is_some())
    }

    async fn write_status(&self, name: &str, status: &TenantInstanceStatus) -> Result<(), Error> {
        self.instances()
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await?;
        Ok(())
    }

    async fn set_finalizer(&self, instance: &TenantInstance, present: bool) -> Result<(), Error> {
        let mut finalizers: Vec<String> = instance.finalizers().to_vec();
        finalizers.retain(|f| f != FINALIZER);
        if present {
            finalizers.push(FINALIZER.to_owned());
        }
        // The resource version makes this a compare-and-set: a finalizer list
        // changed meanwhile by someone else is never overwritten.
        let patch = json!({ "metadata": {
            "finalizers": finalizers,
            "resourceVersion": instance.resource_version(),
        }});
        match self
            .instances()
            .patch(
                &instance.name_any(),
                &PatchParams::default(),
                &Patch::Merge(patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if !present && is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[async_trait::async_trait]
impl Instances for KubeCluster {
    async fn put(&self, spec: &TenantInstanceSpec) -> Result<(), Error> {
        let name = builders::instance_name(&spec.tenant_id)?;
        let mut labels =
            json!({ builders::TENANT_LABEL: spec.tenant_id, builders::MANAGED_BY: MANAGER });
        if let Some(shard) = &self.shard {
            labels[builders::SHARD_LABEL] = shard.as_str().into();
        }
        let object = json!({
            "apiVersion": TenantInstance::api_version(&()),
            "kind": TenantInstance::kind(&()),
            "metadata": { "name": name, "labels": labels, "finalizers": [FINALIZER] },
            "spec": spec,
        });
        self.instances()
            .patch(
                &name,
                &PatchParams::apply(CONTROL_PLANE_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await?;
        Ok(())
    }

    async fn get(&self, tenant_id: &str) -> Result<Option<TenantInstance>, Error> {
        let name = builders::instance_name(tenant_id)?;
        Ok(self.instances().get_opt(&name).await?)
    }

    async fn request_deletion(&self, tenant_id: &str) -> Result<(), Error> {
        let name = builders::instance_name(tenant_id)?;
        match self
            .instances()
            .delete(&name, &DeleteParams::default())
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn manifests(&self, tenant_id: &str) -> Result<Vec<Manifest>, Error> {
        let Some(inst) = Instances::get(self, tenant_id).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for child in inst.status.map(|s| s.children).unwrap_or_default() {
            let Some(kind) = ChildKind::parse(&child.kind) else {
                continue;
            };
            let Some(object) = self
                .api(kind, child.namespace.as_deref())
                .get_opt(&child.name)
                .await?
            else {
                continue;
            };
            let value = serde_json::to_value(&object).map_err(|e| Error::Invalid {
                field: "child",
                reason: e.to_string(),
            })?;
            out.push(Manifest {
                kind: child.kind,
                namespace: child.namespace,
                name: child.name,
                yaml: shown(value)?,
            });
        }
        Ok(out)
    }

    fn watch(&self) -> BoxStream<'static, TenantInstance> {
        use kube::runtime::{watcher, WatchStreamExt};
        let mut config = watcher::Config::default();
        if let Some(shard) = &self.shard {
            config = config.labels(&format!("{}={shard}", builders::SHARD_LABEL));
        }
        watcher(self.instances(), config)
            .default_backoff()
            .applied_objects()
            .filter_map(|r| async move { r.ok() })
            .boxed()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_are_named_by_resource() {
        let patch = http::Method::PATCH;
        assert_eq!(
            super::resource_of(
                &patch,
                "/apis/dotmac.io/v1alpha1/tenantinstances/tenant-x/status"
            ),
            "PATCH tenantinstances/status"
        );
        assert_eq!(
            super::resource_of(&patch, "/api/v1/namespaces/tenant-x/secrets/s"),
            "PATCH secrets"
        );
        assert_eq!(
            super::resource_of(&patch, "/api/v1/namespaces/tenant-x"),
            "PATCH namespaces"
        );
        assert_eq!(
            super::resource_of(&patch, "/apis/apps/v1/namespaces/tenant-x/deployments/d"),
            "PATCH deployments"
        );
    }
}

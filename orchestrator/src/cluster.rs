//! The port the reconcile drives: a cluster that applies and deletes child
//! objects, reports the workload, and stores instances and their status.
//! Two implementations: the Kubernetes API ([`crate::kube_cluster`]) and the
//! local recorder of `dotmac dev` ([`crate::local`]).

use crate::builders::Child;

use crate::resource::{ChildRef, TenantInstance, TenantInstanceSpec, TenantInstanceStatus};
use crate::Error;

/// What the cluster says of an instance's Deployment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WorkloadState {
    pub desired_replicas: i32,
    /// Pods of every template, old ones included.
    pub total_replicas: i32,
    pub available_replicas: i32,
    pub updated_replicas: i32,
    /// The Deployment controller has seen the latest template.
    pub observed: bool,
    /// The rollout missed its progress deadline.
    pub deadline_exceeded: bool,
    /// The framework version of the template (its version label).
    pub version: Option<String>,
}

impl WorkloadState {
    /// Every wanted replica runs the latest template and is available, and
    /// no pod of an older template is left (during a rolling update the old
    /// pod is what is available: that is not the new version serving).
    pub fn rolled_out(&self) -> bool {
        self.observed
            && self.updated_replicas >= self.desired_replicas
            && self.total_replicas <= self.updated_replicas
            && self.available_replicas >= self.desired_replicas
    }
}

/// Where children are applied (the reconcile's side).
#[async_trait::async_trait]
pub trait Cluster: Send + Sync {
    /// Server-side applies `child` with the orchestrator's field manager,
    /// forcing ownership of every field it sets.
    async fn apply(&self, child: &Child) -> Result<(), Error>;
    /// Deletes one child; a child already gone is not an error.
    async fn delete_child(&self, child: &ChildRef) -> Result<(), Error>;
    /// The instance's workload as last seen, if it exists.
    async fn workload(&self, namespace: &str) -> Result<Option<WorkloadState>, Error>;
    /// Whether the namespace still exists (terminating counts as existing).
    async fn namespace_present(&self, namespace: &str) -> Result<bool, Error>;
    /// Replaces the status of instance `name`.
    async fn write_status(&self, name: &str, status: &TenantInstanceStatus) -> Result<(), Error>;
    /// Adds or removes the cleanup finalizer of `instance`.
    async fn set_finalizer(&self, instance: &TenantInstance, present: bool) -> Result<(), Error>;
}

/// Where instances are declared (the control plane's side).
#[async_trait::async_trait]
pub trait Instances: Send + Sync {
    /// Creates or updates the instance of `spec.tenant_id` (with the cleanup
    /// finalizer from birth, so no instance exists unguarded).
    async fn put(&self, spec: &TenantInstanceSpec) -> Result<(), Error>;
    /// The instance of a tenant, if any.
    async fn get(&self, tenant_id: &str) -> Result<Option<TenantInstance>, Error>;
    /// Asks for the instance's deletion: its finalizer then cleans up, or
    /// waits while deletion protection is on. Only ever for one named tenant.
    async fn request_deletion(&self, tenant_id: &str) -> Result<(), Error>;
    /// Every instance now, then every change (spec or status) as it
    /// happens; reconnects on its own. For the control plane's watcher.
    fn watch(&self) -> futures::stream::BoxStream<'static, TenantInstance>;
    /// The children of the tenant's instance as they are on the cluster
    /// (the ones its status lists), as YAML: Secrets' values redacted,
    /// server bookkeeping (managed fields) left out. Empty without an instance.
    async fn manifests(&self, tenant_id: &str) -> Result<Vec<Manifest>, Error>;
}

/// One child object as it is on the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub yaml: String,
}

/// An object made fit to show: Secret values redacted, managed fields gone.
pub fn shown(mut object: serde_json::Value) -> Result<String, Error> {
    if let Some(meta) = object.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    if object.get("kind").and_then(|k| k.as_str()) == Some("Secret") {
        for field in ["data", "stringData"] {
            if let Some(values) = object.get_mut(field).and_then(|d| d.as_object_mut()) {
                for v in values.values_mut() {
                    *v = "[redacted]".into();
                }
            }
        }
    }
    serde_yaml::to_string(&object).map_err(|e| Error::Io {
        op: "render yaml",
        reason: e.to_string(),
    })
}

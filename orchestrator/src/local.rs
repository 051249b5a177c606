//! The local cluster of `dotmac dev`: the same reconcile, applied to a
//! recorder that writes every object it would apply as YAML under
//! `<data>/cluster/` (one folder per namespace; Secrets recorded with their
//! values redacted) and keeps the instances there too. It runs no pods: a
//! Deployment it records counts as rolled out, so a demo tenant reaches
//! Ready within one pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dotmac_schema::SharedClock;
use kube::api::ObjectMeta;
use kube::ResourceExt;

use crate::builders::{self, Child, ChildKind, WORKLOAD};
use crate::cluster::{shown, Cluster, Instances, Manifest, WorkloadState};
use crate::reconcile::{self, Deps, Outcome};
use crate::resource::{
    ChildRef, TenantInstance, TenantInstanceSpec, TenantInstanceStatus, FINALIZER,
};
use crate::secrets::SecretVault;
use crate::{Error, Settings};

/// The folder of cluster-scoped objects.
const CLUSTER_SCOPED: &str = "_cluster";
/// The folder of the instances themselves.
const INSTANCES: &str = "_instances";

pub struct LocalCluster {
    root: PathBuf,
    /// Instances by name; written through to `_instances/` on every change.
    instances: Mutex<BTreeMap<String, TenantInstance>>,
    /// Recorded Deployments' workload, by namespace.
    workloads: Mutex<BTreeMap<String, WorkloadState>>,
    wake: tokio::sync::Notify,
    /// Stamps deletions, as the API server would.
    clock: SharedClock,
    /// Every saved instance, for watchers.
    changes: tokio::sync::broadcast::Sender<TenantInstance>,
}

fn io(op: &'static str) -> impl Fn(std::io::Error) -> Error {
    move |e| Error::Io {
        op,
        reason: e.to_string(),
    }
}

fn yaml<T: serde::Serialize>(v: &T) -> Result<String, Error> {
    serde_yaml::to_string(v).map_err(|e| Error::Io {
        op: "render yaml",
        reason: e.to_string(),
    })
}

fn write_atomic(path: &Path, text: &str) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io("record an object"))?;
    std::fs::rename(&tmp, path).map_err(io("record an object"))
}

impl LocalCluster {
    /// The recorder under `root`, with the instances recorded there before.
    pub fn open(root: &Path, clock: SharedClock) -> Result<Arc<LocalCluster>, Error> {
        let dir = root.join(INSTANCES);
        std::fs::create_dir_all(&dir).map_err(io("create the local cluster"))?;
        let mut instances = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).map_err(io("read the local cluster"))? {
            let path = entry.map_err(io("read the local cluster"))?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(io("read an instance"))?;
            let inst: TenantInstance = serde_yaml::from_str(&text).map_err(|e| Error::Io {
                op: "read an instance",
                reason: format!("{}: {e}", path.display()),
            })?;
            instances.insert(inst.name_any(), inst);
        }
        Ok(Arc::new(LocalCluster {
            root: root.to_owned(),
            instances: Mutex::new(instances),
            workloads: Mutex::new(BTreeMap::new()),
            wake: tokio::sync::Notify::new(),
            clock,
            changes: tokio::sync::broadcast::channel(1024).0,
        }))
    }

    fn object_path(&self, kind: &str, namespace: Option<&str>, name: &str) -> PathBuf {
        self.root
            .join(namespace.unwrap_or(CLUSTER_SCOPED))
            .join(format!("{}-{name}.yaml", kind.to_ascii_lowercase()))
    }

    fn save(&self, inst: &TenantInstance) -> Result<(), Error> {
        write_atomic(
            &self
                .root
                .join(INSTANCES)
                .join(format!("{}.yaml", inst.name_any())),
            &yaml(inst)?,
        )?;
        // Nobody listening is fine: a watcher starts from `list()`.
        let _ = self.changes.send(inst.clone());
        Ok(())
    }

    fn update<F: FnOnce(&mut TenantInstance)>(&self, name: &str, f: F) -> Result<(), Error> {
        let mut all = self.instances.lock().expect("instances lock");
        if let Some(inst) = all.get_mut(name) {
            f(inst);
            self.save(inst)?;
        }
        Ok(())
    }

    /// Every instance as recorded now.
    pub fn list(&self) -> Vec<TenantInstance> {
        self.instances
            .lock()
            .expect("instances lock")
            .values()
            .cloned()
            .collect()
    }

    /// The YAML recorded for a child, as `dotmac dev` shows it.
    pub fn recorded(&self, kind: ChildKind, namespace: Option<&str>, name: &str) -> Option<String> {
        std::fs::read_to_string(self.object_path(kind.as_str(), namespace, name)).ok()
    }

    /// Reconciles every instance once; instances whose cleanup finished are
    /// forgotten. One instance's failure is logged and does not stop the rest.
    pub async fn reconcile_all(
        &self,
        vault: &dyn SecretVault,
        settings: &Settings,
        clock: &SharedClock,
    ) {
        for inst in self.list() {
            let deps = Deps {
                cluster: self,
                vault,
                settings,
                clock: clock.as_ref(),
            };
            match reconcile::reconcile(&inst, &deps).await {
                Ok(Outcome::Released) => {
                    let name = inst.name_any();
                    self.instances.lock().expect("instances lock").remove(&name);
                    let _ = std::fs::remove_file(
                        self.root.join(INSTANCES).join(format!("{name}.yaml")),
                    );
                }
                Ok(Outcome::Requeue(_)) => {}
                Err(e) => {
                    tracing::warn!(instance = %inst.name_any(), error = %e, "local reconcile failed")
                }
            }
        }
    }

    /// The local controller: reconciles on every change and every `tick`.
    pub async fn run(
        self: Arc<Self>,
        vault: Arc<dyn SecretVault>,
        settings: Settings,
        clock: SharedClock,
        tick: Duration,
    ) {
        loop {
            self.reconcile_all(vault.as_ref(), &settings, &clock).await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(tick) => {}
            }
        }
    }
}

#[async_trait::async_trait]
impl Cluster for LocalCluster {
    async fn apply(&self, child: &Child) -> Result<(), Error> {
        let path = self.object_path(child.kind.as_str(), child.namespace.as_deref(), &child.name);
        std::fs::create_dir_all(path.parent().expect("an object path has a folder"))
            .map_err(io("record an object"))?;
        let mut object = child.object.clone();
        if child.sensitive {
            if let Some(data) = object.get_mut("data").and_then(|d| d.as_object_mut()) {
                for v in data.values_mut() {
                    *v = "[redacted]".into();
                }
            }
        }
        write_atomic(&path, &yaml(&object)?)?;
        if child.kind == ChildKind::Deployment && child.name == WORKLOAD {
            let replicas = object["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
            let version = object["spec"]["template"]["metadata"]["labels"]
                ["app.kubernetes.io/version"]
                .as_str()
                .map(str::to_owned);
            let ns = child.namespace.clone().unwrap_or_default();
            self.workloads.lock().expect("workloads lock").insert(
                ns,
                WorkloadState {
                    desired_replicas: replicas,
                    total_replicas: replicas,
                    available_replicas: replicas,
                    updated_replicas: replicas,
                    observed: true,
                    deadline_exceeded: false,
                    version,
                },
            );
        }
        Ok(())
    }

    async fn delete_child(&self, child: &ChildRef) -> Result<(), Error> {
        if child.kind == ChildKind::Namespace.as_str() {
            self.workloads
                .lock()
                .expect("workloads lock")
                .remove(&child.name);
            return match std::fs::remove_dir_all(self.root.join(&child.name)) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io("delete a namespace")(e)),
            };
        }
        match std::fs::remove_file(self.object_path(
            &child.kind,
            child.namespace.as_deref(),
            &child.name,
        )) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("delete an object")(e)),
        }
    }

    async fn workload(&self, namespace: &str) -> Result<Option<WorkloadState>, Error> {
        Ok(self
            .workloads
            .lock()
            .expect("workloads lock")
            .get(namespace)
            .cloned())
    }

    async fn namespace_present(&self, namespace: &str) -> Result<bool, Error> {
        Ok(self.root.join(namespace).exists())
    }

    async fn write_status(&self, name: &str, status: &TenantInstanceStatus) -> Result<(), Error> {
        self.update(name, |inst| inst.status = Some(status.clone()))
    }

    async fn set_finalizer(&self, instance: &TenantInstance, present: bool) -> Result<(), Error> {
        self.update(&instance.name_any(), |inst| {
            let f = inst.metadata.finalizers.get_or_insert_with(Vec::new);
            f.retain(|x| x != FINALIZER);
            if present {
                f.push(FINALIZER.to_owned());
            }
        })
    }
}

#[async_trait::async_trait]
impl Instances for LocalCluster {
    async fn put(&self, spec: &TenantInstanceSpec) -> Result<(), Error> {
        let name = builders::instance_name(&spec.tenant_id)?;
        {
            let mut all = self.instances.lock().expect("instances lock");
            let inst = all.entry(name.clone()).or_insert_with(|| {
                let mut fresh = TenantInstance::new(&name, spec.clone());
                fresh.metadata = ObjectMeta {
                    name: Some(name.clone()),
                    uid: Some(uuid_like(&name)),
                    generation: Some(0),
                    finalizers: Some(vec![FINALIZER.to_owned()]),
                    ..Default::default()
                };
                fresh
            });
            if inst.metadata.generation == Some(0) || inst.spec != *spec {
                inst.spec = spec.clone();
                inst.metadata.generation = Some(inst.metadata.generation.unwrap_or(0) + 1);
            }
            self.save(inst)?;
        }
        self.wake.notify_one();
        Ok(())
    }

    async fn get(&self, tenant_id: &str) -> Result<Option<TenantInstance>, Error> {
        let name = builders::instance_name(tenant_id)?;
        Ok(self
            .instances
            .lock()
            .expect("instances lock")
            .get(&name)
            .cloned())
    }

    async fn request_deletion(&self, tenant_id: &str) -> Result<(), Error> {
        let name = builders::instance_name(tenant_id)?;
        let now = k8s_openapi::jiff::Timestamp::from_second(self.clock.now().timestamp()).map_err(
            |e| Error::Invalid {
                field: "clock",
                reason: e.to_string(),
            },
        )?;
        self.update(&name, |inst| {
            if inst.metadata.deletion_timestamp.is_none() {
                inst.metadata.deletion_timestamp =
                    Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
                inst.metadata.generation = Some(inst.metadata.generation.unwrap_or(0) + 1);
            }
        })?;
        self.wake.notify_one();
        Ok(())
    }

    async fn manifests(&self, tenant_id: &str) -> Result<Vec<Manifest>, Error> {
        let Some(inst) = Instances::get(self, tenant_id).await? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for child in inst.status.map(|s| s.children).unwrap_or_default() {
            let path = self.object_path(&child.kind, child.namespace.as_deref(), &child.name);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let value: serde_json::Value = serde_yaml::from_str(&text).map_err(|e| Error::Io {
                op: "read a recorded object",
                reason: format!("{}: {e}", path.display()),
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

    fn watch(&self) -> futures::stream::BoxStream<'static, TenantInstance> {
        use futures::StreamExt;
        // Subscribed before the snapshot: a change between the two is seen
        // (perhaps twice, which a watcher tolerates), never lost.
        let changes = tokio_stream::wrappers::BroadcastStream::new(self.changes.subscribe())
            .filter_map(|r| async move { r.ok() });
        futures::stream::iter(self.list()).chain(changes).boxed()
    }
}

/// A stable uid for a local instance (its name is already unique).
fn uuid_like(name: &str) -> String {
    format!("local-{name}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{InstanceTier, Phase};
    use crate::secrets::local::LocalSecrets;
    use dotmac_schema::SystemClock;

    const TENANT: &str = "ten_0123456789abcdef0123456789abcdef";

    fn spec() -> TenantInstanceSpec {
        TenantInstanceSpec {
            tenant_id: TENANT.into(),
            tier: InstanceTier::Micro,
            version: "1.0.0".into(),
            image: "ghcr.io/dotmac/isp-framework".into(),
            domain: Some("demo.isp.local".into()),
            suspended: false,
            deletion_protection: true,
            secrets_generation: 0,
            abandon_cleanup: false,
        }
    }

    #[tokio::test]
    async fn a_spec_no_reconcile_can_satisfy_says_why_and_applies_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(SystemClock);
        let cluster = LocalCluster::open(&dir.path().join("cluster"), clock.clone()).unwrap();
        let vault = LocalSecrets::open(&dir.path().join("secrets")).unwrap();
        let bad = TenantInstanceSpec {
            domain: Some("Not A Host/..".into()),
            ..spec()
        };
        cluster.put(&bad).await.unwrap();
        cluster
            .reconcile_all(&vault, &Settings::default(), &clock)
            .await;
        let status = cluster.get(TENANT).await.unwrap().unwrap().status.unwrap();
        assert_eq!(status.phase, Phase::Degraded);
        let ready = status
            .condition(crate::resource::ConditionType::Ready)
            .unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", "InvalidSpec")
        );
        assert!(ready.message.contains("spec.domain"), "{}", ready.message);
        assert!(status.children.is_empty(), "nothing applied");
    }

    #[tokio::test]
    async fn watchers_see_every_status_written() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(SystemClock);
        let cluster = LocalCluster::open(&dir.path().join("cluster"), clock.clone()).unwrap();
        let vault = LocalSecrets::open(&dir.path().join("secrets")).unwrap();
        let mut reports = cluster.watch();
        cluster.put(&spec()).await.unwrap();
        cluster
            .reconcile_all(&vault, &Settings::default(), &clock)
            .await;
        let first = reports.next().await.unwrap();
        assert!(first.status.is_none(), "the put itself");
        let second = tokio::time::timeout(Duration::from_secs(5), reports.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(second.status.unwrap().phase, Phase::Ready);
    }

    #[tokio::test]
    async fn a_local_instance_goes_ready_suspends_and_is_cleaned_up() {
        let dir = tempfile::tempdir().unwrap();
        let clock: SharedClock = Arc::new(SystemClock);
        let cluster = LocalCluster::open(&dir.path().join("cluster"), clock.clone()).unwrap();
        let vault = LocalSecrets::open(&dir.path().join("secrets")).unwrap();
        let settings = Settings::default();
        cluster.put(&spec()).await.unwrap();
        cluster.reconcile_all(&vault, &settings, &clock).await;
        let inst = cluster.get(TENANT).await.unwrap().unwrap();
        let status = inst.status.clone().unwrap();
        assert_eq!(status.phase, Phase::Ready, "{status:?}");
        let ns = status.namespace.clone().unwrap();
        let secret = cluster
            .recorded(ChildKind::Secret, Some(&ns), builders::SECRET)
            .unwrap();
        assert!(secret.contains("[redacted]"));
        let real = vault.ensure(TENANT, 0).await.unwrap();
        assert!(!secret.contains(real.values["DATABASE_PASSWORD"].expose()));
        assert!(cluster
            .recorded(ChildKind::Ingress, Some(&ns), WORKLOAD)
            .is_some());

        // Suspended: scaled to zero, everything else kept.
        cluster
            .put(&TenantInstanceSpec {
                suspended: true,
                domain: None,
                ..spec()
            })
            .await
            .unwrap();
        cluster.reconcile_all(&vault, &settings, &clock).await;
        let status = cluster.get(TENANT).await.unwrap().unwrap().status.unwrap();
        assert_eq!(status.phase, Phase::Suspended);
        let deployment = cluster
            .recorded(ChildKind::Deployment, Some(&ns), WORKLOAD)
            .unwrap();
        assert!(deployment.contains("replicas: 0"), "{deployment}");
        // The Ingress the spec no longer wants was swept.
        assert!(cluster
            .recorded(ChildKind::Ingress, Some(&ns), WORKLOAD)
            .is_none());

        // Deletion waits behind protection, then cleans up in order.
        cluster.request_deletion(TENANT).await.unwrap();
        cluster.reconcile_all(&vault, &settings, &clock).await;
        let status = cluster.get(TENANT).await.unwrap().unwrap().status.unwrap();
        assert_eq!(status.phase, Phase::Terminating);
        assert!(cluster.namespace_present(&ns).await.unwrap());
        cluster
            .update(&builders::instance_name(TENANT).unwrap(), |i| {
                i.spec.deletion_protection = false
            })
            .unwrap();
        cluster.reconcile_all(&vault, &settings, &clock).await;
        assert!(cluster.get(TENANT).await.unwrap().is_none());
        assert!(!cluster.namespace_present(&ns).await.unwrap());
        assert_eq!(vault.version(TENANT, real.version).await.unwrap(), None);
    }
}

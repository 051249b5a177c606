//! `dotmac orchestrate`: the kube-rs controller over `TenantInstance`s.
//!
//! Triggers: an instance whose generation or finalizers changed (its own
//! status writes do not re-trigger it), and any change of a Deployment this
//! controller applied (mapped to its owning instance), so Ready is seen as
//! soon as the workload is available. Reconciles run with bounded concurrency and stop gracefully on
//! shutdown: the running ones finish, no new one starts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dotmac_schema::SharedClock;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{predicates, reflector, watcher, Predicate, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};

use crate::builders::{MANAGED_BY, MANAGER, SHARD_LABEL};
use crate::cluster::Cluster;
use crate::kube_cluster::KubeCluster;
use crate::reconcile::{self, Deps, Outcome};
use crate::resource::{TenantInstance, TenantInstanceStatus};
use crate::secrets::SecretVault;
use crate::{Error, Settings};

/// What every reconcile shares.
struct Ctx {
    cluster: KubeCluster,
    vault: Arc<dyn SecretVault>,
    settings: Settings,
    clock: SharedClock,
    /// The status this process last wrote per instance (uid, generation):
    /// a trigger that arrives before the watch delivered that write still
    /// reconciles from it, instead of applying everything again.
    written: Mutex<HashMap<String, (i64, TenantInstanceStatus)>>,
}

/// A [`Cluster`] that remembers the statuses it wrote.
struct Remembering<'a> {
    ctx: &'a Ctx,
    uid: String,
    generation: i64,
}

#[async_trait::async_trait]
impl Cluster for Remembering<'_> {
    async fn apply(&self, child: &crate::builders::Child) -> Result<(), Error> {
        self.ctx.cluster.apply(child).await
    }
    async fn delete_child(&self, child: &crate::resource::ChildRef) -> Result<(), Error> {
        self.ctx.cluster.delete_child(child).await
    }
    async fn workload(
        &self,
        namespace: &str,
    ) -> Result<Option<crate::cluster::WorkloadState>, Error> {
        self.ctx.cluster.workload(namespace).await
    }
    async fn namespace_present(&self, namespace: &str) -> Result<bool, Error> {
        self.ctx.cluster.namespace_present(namespace).await
    }
    async fn write_status(&self, name: &str, status: &TenantInstanceStatus) -> Result<(), Error> {
        self.ctx.cluster.write_status(name, status).await?;
        self.ctx
            .written
            .lock()
            .expect("written lock")
            .insert(self.uid.clone(), (self.generation, status.clone()));
        Ok(())
    }
    async fn set_finalizer(&self, instance: &TenantInstance, present: bool) -> Result<(), Error> {
        self.ctx.cluster.set_finalizer(instance, present).await
    }
}

async fn reconcile_one(inst: Arc<TenantInstance>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let uid = inst.uid().unwrap_or_default();
    let generation = inst.meta().generation.unwrap_or(0);
    let mut inst = (*inst).clone();
    if let Some((g, status)) = ctx.written.lock().expect("written lock").get(&uid) {
        if *g == generation {
            inst.status = Some(status.clone());
        }
    }
    let cluster = Remembering {
        ctx: &ctx,
        uid: uid.clone(),
        generation,
    };
    let deps = Deps {
        cluster: &cluster,
        vault: ctx.vault.as_ref(),
        settings: &ctx.settings,
        clock: ctx.clock.as_ref(),
    };
    let started = std::time::Instant::now();
    let outcome = reconcile::reconcile(&inst, &deps).await;
    tracing::debug!(instance = %inst.name_any(), took_ms = started.elapsed().as_millis() as u64, ok = outcome.is_ok(), "reconciled");
    match outcome? {
        Outcome::Requeue(after) => Ok(Action::requeue(after)),
        Outcome::Released => {
            ctx.written.lock().expect("written lock").remove(&uid);
            Ok(Action::await_change())
        }
    }
}

/// The instance that owns a Deployment, keyed as the instance itself is.
fn owner_of(d: Deployment) -> Option<ObjectRef<TenantInstance>> {
    d.metadata
        .owner_references
        .unwrap_or_default()
        .into_iter()
        .find(|o| {
            o.kind == TenantInstance::kind(&()) && o.api_version == TenantInstance::api_version(&())
        })
        .map(|o| ObjectRef::new(&o.name))
}

fn error_policy(inst: Arc<TenantInstance>, err: &Error, _ctx: Arc<Ctx>) -> Action {
    tracing::warn!(instance = %inst.name_any(), error = %err, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Checks that the CRD is installed, so a missing one is one clear message
/// instead of a watcher retrying forever.
pub async fn check_crd(client: &Client) -> Result<(), Error> {
    let api: Api<TenantInstance> = Api::all(client.clone());
    api.list(&kube::api::ListParams::default().limit(1))
        .await
        .map(|_| ())
        .map_err(|e| Error::Invalid {
            field: "kubernetes",
            reason: format!(
                "the TenantInstance CRD is not served ({e}); apply deploy/crds/tenantinstance.yaml first"
            ),
        })
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    client: Client,
    vault: Arc<dyn SecretVault>,
    settings: Settings,
    clock: SharedClock,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    check_crd(&client).await?;
    let (instances_reader, instances_writer) = reflector::store();
    let mut instance_config = watcher::Config::default();
    if let Some(shard) = &settings.shard {
        instance_config = instance_config.labels(&format!("{SHARD_LABEL}={shard}"));
    }
    let instances = watcher(Api::<TenantInstance>::all(client.clone()), instance_config)
        .default_backoff()
        .reflect(instances_writer)
        .applied_objects()
        .predicate_filter(
            predicates::generation.combine(predicates::finalizers),
            Default::default(),
        );
    let (deployments_reader, deployments_writer) = reflector::store();
    let selector = format!("{MANAGED_BY}={MANAGER}");
    let deployments = watcher(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default().labels(&selector),
    )
    .default_backoff()
    .reflect(deployments_writer)
    .applied_objects();
    let ctx = Arc::new(Ctx {
        cluster: KubeCluster::new(client, Some(deployments_reader)),
        vault,
        settings: settings.clone(),
        clock,
        written: Mutex::new(HashMap::new()),
    });
    tracing::info!(
        concurrency = settings.concurrency,
        "orchestrator controller started"
    );
    Controller::for_stream(instances, instances_reader)
        // Not `owns_stream`: it keys the owner by the child's namespace, and a
        // cluster-scoped instance keyed twice (with and without a namespace)
        // is reconciled twice at once. Each Deployment maps to its owner's
        // cluster-scoped key instead.
        .watches_stream(deployments, owner_of)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile_one, error_policy, ctx)
        .for_each(|_| futures::future::ready(()))
        .await;
    tracing::info!("orchestrator controller stopped");
    Ok(())
}

//! Tenant instances on a real Kubernetes 1.20 API server (with its real
//! controller-manager and the harness kubelet): onboarding to Ready,
//! suspension, reactivation, re-tiering, upgrades with a forced rollback,
//! and deletion — protected, and with the operator down and then up.

use std::sync::Arc;
use std::time::Duration;

use dotmac_orchestrator::builders::{self, WORKLOAD};
use dotmac_orchestrator::cluster::{Cluster, Instances};
use dotmac_orchestrator::kube_cluster::{KubeCluster, RequestCounts};
use dotmac_orchestrator::resource::{
    ConditionType, InstanceTier, Phase, TenantInstance, TenantInstanceSpec,
};
use dotmac_orchestrator::secrets::openbao::OpenBao;
use dotmac_orchestrator::secrets::SecretVault;
use dotmac_orchestrator::{controller, testkit, Settings};
use dotmac_schema::{SharedClock, SystemClock, TenantId};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ResourceQuota, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::api::Api;
use kube::Client;
use tokio::sync::oneshot;

struct Harness {
    client: Client,
    counts: Arc<RequestCounts>,
    instances: KubeCluster,
    vault: Arc<OpenBao>,
    settings: Settings,
    controller: Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>,
    _kubelet: testkit::Kubelet,
}

fn vault() -> Arc<OpenBao> {
    Arc::new(OpenBao::new(testkit::openbao_settings()).unwrap())
}

impl Harness {
    async fn new() -> Harness {
        let counts = Arc::new(RequestCounts::default());
        let client = testkit::connect(counts.clone())
            .await
            .expect("the test API server (deploy/local/kubernetes.sh)");
        let kubelet = testkit::Kubelet::start(client.clone()).await.unwrap();
        // This run's own shard: controllers of other tests never see its instances.
        let shard = format!("t{}", &TenantId::new().as_str()[20..]);
        let settings = Settings {
            progress_deadline_seconds: 8,
            poll_while_pending: Duration::from_secs(2),
            concurrency: 8,
            shard: Some(shard.clone()),
            ..Settings::default()
        };
        Harness {
            instances: KubeCluster::new(client.clone(), None).with_shard(Some(shard)),
            client,
            counts,
            vault: vault(),
            settings,
            controller: None,
            _kubelet: kubelet,
        }
    }

    fn start_controller(&mut self) {
        let (stop, stopped) = oneshot::channel::<()>();
        let clock: SharedClock = Arc::new(SystemClock);
        let task = tokio::spawn(controller::run(
            self.client.clone(),
            self.vault.clone(),
            self.settings.clone(),
            clock,
            async move {
                let _ = stopped.await;
            },
        ));
        let handle = tokio::spawn(async move {
            task.await.unwrap().unwrap();
        });
        self.controller = Some((stop, handle));
    }

    async fn stop_controller(&mut self) {
        if let Some((stop, handle)) = self.controller.take() {
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(30), handle)
                .await
                .expect("graceful shutdown")
                .unwrap();
        }
    }

    async fn get(&self, tenant: &str) -> Option<TenantInstance> {
        self.instances.get(tenant).await.unwrap()
    }

    /// Waits until `done` holds of the tenant's instance (or its absence).
    async fn wait<F: Fn(Option<&TenantInstance>) -> bool>(
        &self,
        tenant: &str,
        what: &str,
        done: F,
    ) -> Option<TenantInstance> {
        for _ in 0..360 {
            let inst = self.get(tenant).await;
            if done(inst.as_ref()) {
                return inst;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let inst = self.get(tenant).await;
        panic!(
            "{tenant} never became {what}: {:#?}",
            inst.and_then(|i| i.status)
        );
    }

    async fn wait_phase(&self, tenant: &str, phase: Phase, version: &str) -> TenantInstance {
        self.wait(tenant, phase.as_str(), |i| {
            i.and_then(|i| i.status.as_ref().map(|s| (i, s)))
                .is_some_and(|(i, s)| {
                    s.phase == phase
                        && s.observed_generation == i.metadata.generation.unwrap_or(0)
                        && s.current_version.as_deref() == Some(version)
                })
        })
        .await
        .unwrap()
    }

    async fn deployment(&self, tenant: &str) -> Deployment {
        let ns = builders::namespace_for(tenant).unwrap();
        Api::<Deployment>::namespaced(self.client.clone(), &ns)
            .get(WORKLOAD)
            .await
            .unwrap()
    }
}

fn spec(tenant: &str, tier: InstanceTier) -> TenantInstanceSpec {
    TenantInstanceSpec {
        tenant_id: tenant.to_owned(),
        tier,
        version: "1.0.0".into(),
        image: "registry.example/isp-framework".into(),
        domain: None,
        suspended: false,
        deletion_protection: true,
        secrets_generation: 0,
        abandon_cleanup: false,
    }
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_tenants_onboard_and_live_their_lifecycle_on_a_real_api_server() {
    let mut h = Harness::new().await;
    h.start_controller();
    let tenants: Vec<String> = (0..50).map(|_| TenantId::new().to_string()).collect();
    let tiers = [
        InstanceTier::Micro,
        InstanceTier::Small,
        InstanceTier::Large,
    ];
    for (i, t) in tenants.iter().enumerate() {
        let mut s = spec(t, tiers[i % 3]);
        if i == 0 {
            s.domain = Some("first.isp.example".into());
        }
        h.instances.put(&s).await.unwrap();
    }
    for t in &tenants {
        let inst = h.wait_phase(t, Phase::Ready, "1.0.0").await;
        let status = inst.status.unwrap();
        for c in [
            ConditionType::QuotaApplied,
            ConditionType::NetworkIsolated,
            ConditionType::SecretsSynced,
            ConditionType::WorkloadAvailable,
            ConditionType::Ready,
        ] {
            assert_eq!(
                status.condition(c).map(|c| c.status.as_str()),
                Some("True"),
                "{t} {c:?}: {status:?}"
            );
        }
        assert!(status.ready_since.is_some());
    }
    // Every tenant has exactly its children, each in its own namespace.
    for t in &tenants {
        let ns = builders::namespace_for(t).unwrap();
        assert_eq!(
            testkit::count_labelled::<Namespace>(&h.client, t)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            testkit::count_labelled::<NetworkPolicy>(&h.client, t)
                .await
                .unwrap(),
            2
        );
        assert_eq!(
            testkit::count_labelled::<Deployment>(&h.client, t)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            testkit::count_labelled::<Secret>(&h.client, t)
                .await
                .unwrap(),
            1
        );
        let quotas = Api::<ResourceQuota>::all(h.client.clone())
            .list(
                &kube::api::ListParams::default()
                    .labels(&format!("{}={t}", builders::TENANT_LABEL)),
            )
            .await
            .unwrap();
        assert_eq!(quotas.items.len(), 1);
        assert!(quotas
            .items
            .iter()
            .all(|q| q.metadata.namespace.as_deref() == Some(ns.as_str())));
    }
    // The delivered Secret holds the store's current values.
    let first = &tenants[0];
    let secret =
        Api::<Secret>::namespaced(h.client.clone(), &builders::namespace_for(first).unwrap())
            .get(builders::SECRET)
            .await
            .unwrap();
    let stored = h.vault.ensure(first, 0).await.unwrap();
    let delivered = secret.data.unwrap();
    assert_eq!(
        delivered["DATABASE_PASSWORD"].0,
        stored.values["DATABASE_PASSWORD"].expose().as_bytes()
    );

    // Suspend: scaled to zero, namespace and secrets kept; reactivate: back.
    let t = &tenants[0];
    h.instances
        .put(&TenantInstanceSpec {
            suspended: true,
            domain: None,
            ..spec(t, InstanceTier::Micro)
        })
        .await
        .unwrap();
    h.wait(t, "Suspended", |i| {
        i.and_then(|i| i.status.as_ref()).is_some_and(|s| {
            s.phase == Phase::Suspended
                && s.condition(ConditionType::WorkloadAvailable)
                    .is_some_and(|c| c.status == "True")
        })
    })
    .await;
    assert_eq!(h.deployment(t).await.spec.unwrap().replicas, Some(0));
    assert_eq!(
        testkit::count_labelled::<Secret>(&h.client, t)
            .await
            .unwrap(),
        1
    );
    // The Ingress the spec stopped wanting was swept.
    assert_eq!(
        testkit::count_labelled::<k8s_openapi::api::networking::v1::Ingress>(&h.client, t)
            .await
            .unwrap(),
        0
    );
    h.instances
        .put(&spec(t, InstanceTier::Micro))
        .await
        .unwrap();
    h.wait_phase(t, Phase::Ready, "1.0.0").await;

    // Re-tier: the quota is updated in place, never deleted and re-created.
    let t = &tenants[3];
    let quotas =
        || Api::<ResourceQuota>::namespaced(h.client.clone(), &builders::namespace_for(t).unwrap());
    let before = quotas().get("tier-quota").await.unwrap();
    h.instances
        .put(&spec(t, InstanceTier::Large))
        .await
        .unwrap();
    h.wait(t, "re-tiered", |i| {
        i.and_then(|i| i.status.as_ref().map(|s| (i, s)))
            .is_some_and(|(i, s)| {
                s.observed_generation == i.metadata.generation.unwrap_or(0)
                    && s.phase == Phase::Ready
            })
    })
    .await;
    let after = quotas().get("tier-quota").await.unwrap();
    assert_eq!(before.metadata.uid, after.metadata.uid);
    assert_eq!(after.spec.unwrap().hard.unwrap()["limits.cpu"].0, "4");

    // Upgrade: the new version serves; status keeps the one before.
    let t = &tenants[1];
    h.instances
        .put(&TenantInstanceSpec {
            version: "1.1.0".into(),
            ..spec(t, InstanceTier::Small)
        })
        .await
        .unwrap();
    let up = h.wait_phase(t, Phase::Ready, "1.1.0").await.status.unwrap();
    assert_eq!(up.previous_version.as_deref(), Some("1.0.0"));
    assert!(image_of(&h.deployment(t).await).ends_with(":1.1.0"));

    // A version that never becomes Ready misses its deadline and is rolled back.
    let t = &tenants[2];
    h.instances
        .put(&TenantInstanceSpec {
            version: "1.1.0-broken".into(),
            ..spec(t, InstanceTier::Large)
        })
        .await
        .unwrap();
    let rolled = h
        .wait(t, "rolled back", |i| {
            i.and_then(|i| i.status.as_ref())
                .is_some_and(|s| s.rolled_back_from.as_deref() == Some("1.1.0-broken"))
        })
        .await
        .unwrap()
        .status
        .unwrap();
    assert_eq!(rolled.phase, Phase::Degraded);
    assert_eq!(
        rolled.condition(ConditionType::Ready).unwrap().reason,
        "RolledBack"
    );
    assert!(image_of(&h.deployment(t).await).ends_with(":1.0.0"));
    // The previous version keeps serving.
    h.wait(t, "available again", |i| {
        i.and_then(|i| i.status.as_ref()).is_some_and(|s| {
            s.current_version.as_deref() == Some("1.0.0")
                && s.condition(ConditionType::WorkloadAvailable)
                    .is_some_and(|c| c.status == "True")
        })
    })
    .await;

    // Deletion behind protection does nothing but say why.
    let t = &tenants[4];
    h.instances.request_deletion(t).await.unwrap();
    let held = h
        .wait(t, "held by protection", |i| {
            i.and_then(|i| i.status.as_ref())
                .is_some_and(|s| s.phase == Phase::Terminating)
        })
        .await
        .unwrap();
    assert_eq!(
        held.status
            .unwrap()
            .condition(ConditionType::CleanedUp)
            .unwrap()
            .reason,
        "DeletionProtected"
    );
    let ns = builders::namespace_for(t).unwrap();
    assert!(h.instances.namespace_present(&ns).await.unwrap());

    // Deletion with the operator down waits; with it up, it cleans up in order.
    h.stop_controller().await;
    let t = &tenants[5];
    let revoked_version = h.vault.ensure(t, 0).await.unwrap().version;
    h.instances
        .put(&TenantInstanceSpec {
            deletion_protection: false,
            ..spec(t, InstanceTier::Large)
        })
        .await
        .unwrap();
    h.instances.request_deletion(t).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pending = h
        .get(t)
        .await
        .expect("held by its finalizer while the operator is down");
    assert!(pending.metadata.deletion_timestamp.is_some());
    let ns = builders::namespace_for(t).unwrap();
    assert!(h.instances.namespace_present(&ns).await.unwrap());
    h.start_controller();
    h.wait(t, "gone", |i| i.is_none()).await;
    assert!(
        !h.instances.namespace_present(&ns).await.unwrap(),
        "namespace deleted before release"
    );
    assert_eq!(
        vault().version(t, revoked_version).await.unwrap(),
        None,
        "secrets revoked"
    );
    // No other tenant lost anything.
    assert_eq!(
        testkit::count_labelled::<Deployment>(&h.client, &tenants[6])
            .await
            .unwrap(),
        1
    );

    // Tidy up: every remaining instance cleaned up through the finalizer.
    for t in &tenants {
        if h.get(t).await.is_some() {
            let mut s = spec(t, InstanceTier::Micro);
            s.deletion_protection = false;
            if let Some(inst) = h.get(t).await {
                s = TenantInstanceSpec {
                    deletion_protection: false,
                    ..inst.spec
                };
            }
            h.instances.put(&s).await.unwrap();
            h.instances.request_deletion(t).await.unwrap();
        }
    }
    for t in &tenants {
        h.wait(t, "cleaned up", |i| i.is_none()).await;
    }
    h.stop_controller().await;
    assert!(h.counts.requests() > 0);
}

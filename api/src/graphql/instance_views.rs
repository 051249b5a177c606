//! How a tenant's instance looks in GraphQL (`Tenant.instance`): its phase,
//! the conditions naming any failing step, and its versions, as the cluster
//! last reported them. Secret values never appear: only their version.

use async_graphql::{Context, Enum, Object, SimpleObject};
use chrono::{DateTime, Utc};

use crate::service::directory::instances::Observation;
use crate::store::instance_rows::InstanceRow;

/// Where an instance is, in one word.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum InstancePhase {
    /// Wanted, not yet reported by the cluster.
    Requested,
    Provisioning,
    Ready,
    Degraded,
    Suspended,
    Upgrading,
    Terminating,
}

impl InstancePhase {
    pub(crate) fn of(phase: dotmac_orchestrator::Phase) -> InstancePhase {
        use dotmac_orchestrator::Phase as P;
        match phase {
            P::Provisioning => InstancePhase::Provisioning,
            P::Ready => InstancePhase::Ready,
            P::Degraded => InstancePhase::Degraded,
            P::Suspended => InstancePhase::Suspended,
            P::Upgrading => InstancePhase::Upgrading,
            P::Terminating => InstancePhase::Terminating,
        }
    }
}

/// One step of the instance, as the cluster reports it.
#[derive(SimpleObject)]
pub struct InstanceCondition {
    /// QuotaApplied, NetworkIsolated, SecretsSynced, WorkloadAvailable, Ready, CleanedUp.
    pub r#type: String,
    pub ok: bool,
    /// One CamelCase word.
    pub reason: String,
    /// What a person should know.
    pub message: String,
    /// When `ok` last changed (RFC 3339).
    pub since: String,
}

/// A tenant's instance: what the platform asked for and what runs.
pub struct TenantInstanceView {
    pub row: InstanceRow,
    pub observed: Option<Observation>,
}

impl TenantInstanceView {
    pub fn new(row: InstanceRow) -> TenantInstanceView {
        let observed = row
            .observed
            .as_deref()
            .and_then(|o| serde_json::from_str(o).ok());
        TenantInstanceView { row, observed }
    }

    fn desired(&self) -> Option<dotmac_orchestrator::TenantInstanceSpec> {
        serde_json::from_str(&self.row.desired).ok()
    }
}

/// One child object of an instance as it is on the cluster.
#[derive(SimpleObject)]
pub struct InstanceManifest {
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// The object as YAML; a Secret's values read `[redacted]`.
    pub yaml: String,
}

#[Object]
impl TenantInstanceView {
    /// Its child objects as they are on the cluster (the local target's
    /// recorded YAML in `dev`), so operators read them without `kubectl`.
    async fn manifests(&self, gctx: &Context<'_>) -> async_graphql::Result<Vec<InstanceManifest>> {
        let (app, _) = super::ctx(gctx);
        let Some(orch) = &app.directory.orchestration else {
            return Ok(Vec::new());
        };
        let found = orch
            .instances
            .manifests(&self.row.tenant_id)
            .await
            .map_err(|e| crate::error::ApiError::Unavailable(format!("the cluster: {e}")))?;
        Ok(found
            .into_iter()
            .map(|m| InstanceManifest {
                kind: m.kind,
                namespace: m.namespace,
                name: m.name,
                yaml: m.yaml,
            })
            .collect())
    }
    async fn phase(&self) -> InstancePhase {
        self.observed
            .as_ref()
            .map(|o| InstancePhase::of(o.phase))
            .unwrap_or(InstancePhase::Requested)
    }
    /// Ready, and reporting on the latest spec.
    async fn ready(&self) -> bool {
        self.observed.as_ref().is_some_and(Observation::ready)
    }
    async fn conditions(&self) -> Vec<InstanceCondition> {
        self.observed
            .as_ref()
            .map(|o| {
                o.conditions
                    .iter()
                    .map(|c| InstanceCondition {
                        r#type: c.type_.clone(),
                        ok: c.ok,
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        since: c.since.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
    /// The step that keeps it from Ready, if any.
    async fn blocking_step(&self) -> Option<String> {
        self.observed.as_ref().and_then(Observation::blocking_step)
    }
    /// The framework version asked for.
    async fn desired_version(&self) -> Option<String> {
        self.desired().map(|d| d.version)
    }
    async fn current_version(&self) -> Option<&str> {
        self.observed.as_ref()?.current_version.as_deref()
    }
    async fn previous_version(&self) -> Option<&str> {
        self.observed.as_ref()?.previous_version.as_deref()
    }
    /// The version an upgrade was rolled back from, while it stays so.
    async fn rolled_back_from(&self) -> Option<&str> {
        self.observed.as_ref()?.rolled_back_from.as_deref()
    }
    async fn namespace(&self) -> Option<&str> {
        self.observed.as_ref()?.namespace.as_deref()
    }
    async fn suspended(&self) -> bool {
        self.desired().is_some_and(|d| d.suspended)
    }
    async fn deletion_requested(&self) -> bool {
        self.row.delete_requested
    }
    /// The version of its secrets delivered (never their values).
    async fn secrets_version(&self) -> i64 {
        self.observed
            .as_ref()
            .map(|o| i64::try_from(o.secrets_version).unwrap_or(i64::MAX))
            .unwrap_or(0)
    }
    /// The cluster has been told the latest change.
    async fn synced(&self) -> bool {
        self.row.synced_generation >= self.row.desired_generation
    }
    /// Why telling the cluster failed last (retried).
    async fn sync_error(&self) -> Option<&str> {
        self.row.sync_error.as_deref()
    }
    async fn ready_since(&self) -> Option<&str> {
        self.observed.as_ref()?.ready_since.as_deref()
    }
    async fn observed_at(&self) -> Option<DateTime<Utc>> {
        self.row.observed_at
    }
}

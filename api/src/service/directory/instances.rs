//! Tenant instances: the tenant's lifecycle drives the spec of its instance
//! on the cluster, and the instance's status drives the lifecycle back.
//!
//! - Every lifecycle change records the spec it wants in its own
//!   transaction (`tenant_instances`, a new generation), so a change exists
//!   if and only if its wish does.
//! - The sync (in every process with a cluster target) carries unsynced
//!   generations to the cluster, each tenant on its own: one tenant's failure
//!   is recorded on its row and retried, and holds up no other.
//! - The watcher ([`super::instance_watch`]) writes back what the cluster
//!   reports and moves the lifecycle on.
//!
//! Deletion is only ever asked for one named tenant, from its cancellation
//! or deprovisioning: nothing here deletes because a list came back empty.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use dotmac_orchestrator::cluster::Instances;
use dotmac_orchestrator::resource::{
    ConditionType, InstanceTier, Phase, TenantInstance, TenantInstanceSpec,
};
use dotmac_schema::{Role, Scope, TenantAction, TenantId};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::Directory;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::{parse_id, reason};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::instance_rows::{self, InstanceRow};
use crate::store::tenant_rows::{self, TenantRow};
use crate::store::{Store, Tx};

/// Unsynced instances carried to the cluster per pass.
const SYNC_BATCH: u64 = 50;
/// How often the sync looks for work nobody woke it for (another
/// process's changes, retries after a failure).
const SYNC_POLL: Duration = Duration::from_secs(1);
/// The audit action of a rotation (on demand or scheduled).
const ROTATE_ACTION: &str = "tenant.instance.rotate_secrets";
/// How often the rotation schedule looks for secrets that are due.
const ROTATION_POLL: Duration = Duration::from_secs(10);
/// Instances rotated per schedule pass.
const ROTATION_BATCH: u64 = 100;
/// A sync error kept on a row is cut to this many characters.
const ERROR_MAX: usize = 500;

/// What a new instance gets.
#[derive(Debug, Clone)]
pub struct InstanceDefaults {
    pub image: String,
    pub version: String,
    /// Instances answer on `<slug>.<suffix>` when set.
    pub domain_suffix: Option<String>,
    pub onboarding_deadline: TimeDelta,
    /// Secrets older than this are rotated on schedule; `None`: on demand only.
    pub rotate_every: Option<TimeDelta>,
}

/// The cluster side of the directory, when a target is configured.
pub struct Orchestration {
    pub instances: Arc<dyn Instances>,
    pub defaults: InstanceDefaults,
    wake: Notify,
}

impl Orchestration {
    pub fn new(instances: Arc<dyn Instances>, defaults: InstanceDefaults) -> Arc<Orchestration> {
        Arc::new(Orchestration {
            instances,
            defaults,
            wake: Notify::new(),
        })
    }

    /// After a commit that recorded a wish: the sync carries it now.
    pub fn committed(&self) {
        self.wake.notify_one();
    }
}

/// What the cluster last reported of an instance, as stored and served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observation {
    pub phase: Phase,
    pub conditions: Vec<ObservedCondition>,
    pub namespace: Option<String>,
    pub current_version: Option<String>,
    pub previous_version: Option<String>,
    pub rolled_back_from: Option<String>,
    pub ready_since: Option<String>,
    pub secrets_version: u64,
    /// The spec generation the status describes, and the latest one.
    pub observed_generation: i64,
    pub generation: i64,
    pub deleting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObservedCondition {
    pub type_: String,
    pub ok: bool,
    pub reason: String,
    pub message: String,
    pub since: String,
}

impl Observation {
    pub fn of(inst: &TenantInstance) -> Option<Observation> {
        let s = inst.status.as_ref()?;
        Some(Observation {
            phase: s.phase,
            conditions: s
                .conditions
                .iter()
                .map(|c| ObservedCondition {
                    type_: c.type_.as_str().to_owned(),
                    ok: c.status == "True",
                    reason: c.reason.clone(),
                    message: c.message.clone(),
                    since: c.last_transition_time.clone(),
                })
                .collect(),
            namespace: s.namespace.clone(),
            current_version: s.current_version.clone(),
            previous_version: s.previous_version.clone(),
            rolled_back_from: s.rolled_back_from.clone(),
            ready_since: s.ready_since.clone(),
            secrets_version: s.secrets_version,
            observed_generation: s.observed_generation,
            generation: inst.metadata.generation.unwrap_or(0),
            deleting: inst.metadata.deletion_timestamp.is_some(),
        })
    }

    /// Ready, and about the spec the cluster has now.
    pub fn ready(&self) -> bool {
        self.phase == Phase::Ready && self.observed_generation == self.generation
    }

    /// The step that is not done, as "Step: reason — message".
    pub fn blocking_step(&self) -> Option<String> {
        let ready = ConditionType::Ready.as_str();
        self.conditions
            .iter()
            .filter(|c| !c.ok && c.type_ != ready)
            .chain(self.conditions.iter().filter(|c| !c.ok && c.type_ == ready))
            .next()
            .map(|c| format!("{}: {} — {}", c.type_, c.reason, c.message))
    }
}

/// The spec of a tenant's instance after `action` (`None`: its tier
/// changed), from the one wanted before; `None` when nothing changes. The
/// flag says whether the instance should be deleted.
pub fn next_spec(
    before: Option<&TenantInstanceSpec>,
    row: &TenantRow,
    action: Option<TenantAction>,
    defaults: &InstanceDefaults,
) -> Option<(TenantInstanceSpec, bool)> {
    let fresh = || TenantInstanceSpec {
        tenant_id: row.id.clone(),
        tier: InstanceTier::from(row.tier),
        version: defaults.version.clone(),
        image: defaults.image.clone(),
        domain: defaults
            .domain_suffix
            .as_ref()
            .map(|suffix| format!("{}.{suffix}", row.slug)),
        suspended: false,
        deletion_protection: true,
        secrets_generation: 0,
        abandon_cleanup: false,
    };
    let mut spec = before.cloned();
    let mut delete = false;
    match action {
        Some(TenantAction::Provision) => {
            let mut s = spec.unwrap_or_else(fresh);
            s.suspended = false;
            s.deletion_protection = true;
            s.abandon_cleanup = false;
            s.tier = InstanceTier::from(row.tier);
            spec = Some(s);
        }
        Some(TenantAction::Suspend) => spec.as_mut()?.suspended = true,
        Some(TenantAction::Reactivate) => spec.as_mut()?.suspended = false,
        Some(TenantAction::Cancel) | Some(TenantAction::Deprovision) => {
            let s = spec.as_mut()?;
            s.deletion_protection = false;
            s.suspended = true;
            delete = true;
        }
        Some(TenantAction::Activate)
        | Some(TenantAction::MarkFailed)
        | Some(TenantAction::StartMaintenance) => return None,
        None => spec.as_mut()?.tier = InstanceTier::from(row.tier),
    }
    spec.map(|s| (s, delete))
}

fn parse_spec(row: &InstanceRow) -> ApiResult<TenantInstanceSpec> {
    serde_json::from_str(&row.desired)
        .map_err(|e| ApiError::internal(format!("a stored instance spec does not parse: {e}")))
}

fn encode(spec: &TenantInstanceSpec) -> ApiResult<String> {
    serde_json::to_string(spec).map_err(|e| ApiError::internal(e.to_string()))
}

/// Records, in `tx`, what the tenant's instance should be after `action`
/// (or a tier change); a no-op without a cluster target.
pub async fn want(
    tx: &Tx,
    directory: &Directory,
    scope: &Scope,
    row: &TenantRow,
    action: Option<TenantAction>,
) -> ApiResult<()> {
    let Some(orch) = &directory.orchestration else {
        return Ok(());
    };
    let id: TenantId = parse_id("id", &row.id)?;
    let before = instance_rows::get(tx, scope, &id).await?;
    let before_spec = before.as_ref().map(parse_spec).transpose()?;
    let Some((spec, delete)) = next_spec(before_spec.as_ref(), row, action, &orch.defaults) else {
        return Ok(());
    };
    let delete = delete
        || before
            .as_ref()
            .is_some_and(|b| b.delete_requested && action.is_none());
    instance_rows::desire(
        tx,
        scope,
        &row.id,
        encode(&spec)?,
        delete,
        directory.clock.now(),
    )
    .await
}

/// A change of one field of a tenant's wanted spec, by an operator.
async fn change_spec(
    directory: &Directory,
    ctx: &RequestCtx,
    id: &str,
    roles: &[Role],
    action: &'static str,
    change: impl FnOnce(&mut TenantInstanceSpec, &InstanceRow) -> ApiResult<(String, String)>,
) -> ApiResult<TenantRow> {
    let p = ctx.writer_with(roles)?;
    let id: TenantId = parse_id("id", id)?;
    let tx = directory.store.begin(&p.scope).await?;
    // Another tenant's is NOT_FOUND before anything else is said of it.
    let row = tenant_rows::get(&tx, &p.scope, &id).await?;
    if directory.orchestration.is_none() {
        return Err(ApiError::conflict(
            "id",
            "no cluster is configured (orchestrator.target): tenants have no instances",
        ));
    }
    let instance = instance_rows::get(&tx, &p.scope, &id)
        .await?
        .ok_or_else(|| {
            ApiError::conflict("id", "this tenant has no instance yet: provision it first")
        })?;
    let mut spec = parse_spec(&instance)?;
    let (before, after) = change(&mut spec, &instance)?;
    instance_rows::desire(
        &tx,
        &p.scope,
        &row.id,
        encode(&spec)?,
        instance.delete_requested,
        directory.clock.now(),
    )
    .await?;
    if action == ROTATE_ACTION {
        instance_rows::mark_rotated(&tx, &row.id, directory.clock.now()).await?;
    }
    audit_log::record(
        &tx,
        directory.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action,
            tenant_id: Some(row.id.clone()),
            reseller_id: row.reseller_id.clone(),
            object_id: Some(row.id.clone()),
            before: Some(before),
            after: Some(after),
        },
    )
    .await?;
    tx.commit().await?;
    if let Some(o) = &directory.orchestration {
        o.committed();
    }
    Ok(row)
}

/// Moves one tenant's instance to `version` (platform admins).
pub async fn upgrade(
    directory: &Directory,
    ctx: &RequestCtx,
    id: &str,
    version: &str,
) -> ApiResult<TenantRow> {
    dotmac_orchestrator::builders::valid_version(version)
        .map_err(|e| ApiError::validation("version", e.to_string()))?;
    change_spec(
        directory,
        ctx,
        id,
        &[Role::PlatformAdmin],
        "tenant.instance.upgrade",
        |spec, row| {
            if row.delete_requested {
                return Err(ApiError::conflict(
                    "id",
                    "this tenant's instance is being deleted",
                ));
            }
            let before = std::mem::replace(&mut spec.version, version.to_owned());
            Ok((before, version.to_owned()))
        },
    )
    .await
}

/// Asks for a new generation of the tenant's secrets: a new version in the
/// store, delivered and rolled out; the previous one stays readable until
/// the pods have moved. Values are never part of the audit record.
pub async fn rotate_secrets(
    directory: &Directory,
    ctx: &RequestCtx,
    id: &str,
) -> ApiResult<TenantRow> {
    change_spec(
        directory,
        ctx,
        id,
        &[Role::PlatformAdmin, Role::TenantAdmin],
        ROTATE_ACTION,
        bump_secrets,
    )
    .await
}

/// The next generation of a spec's secrets, for the audit record too.
fn bump_secrets(spec: &mut TenantInstanceSpec, row: &InstanceRow) -> ApiResult<(String, String)> {
    if row.delete_requested {
        return Err(ApiError::conflict(
            "id",
            "this tenant's instance is being deleted",
        ));
    }
    let before = spec.secrets_generation;
    spec.secrets_generation = before
        .checked_add(1)
        .ok_or_else(|| ApiError::conflict("id", "secrets were rotated too many times"))?;
    Ok((
        format!("generation {before}"),
        format!("generation {}", spec.secrets_generation),
    ))
}

/// Rotates the secrets of instances whose secrets are older than the
/// schedule allows; returns how many. Each as `system:rotation`, audited.
pub async fn rotate_due(directory: &Directory, every: TimeDelta) -> ApiResult<usize> {
    let now = directory.clock.now();
    let tx = directory.store.begin_system().await?;
    let due = instance_rows::due_for_rotation(&tx, now - every, ROTATION_BATCH).await?;
    tx.commit().await?;
    let ctx = RequestCtx::system("rotation");
    let mut rotated = 0;
    for row in due {
        match rotate_secrets(directory, &ctx, &row.tenant_id).await {
            Ok(_) => rotated += 1,
            Err(e) => {
                tracing::warn!(tenant = %row.tenant_id, error = %e, "scheduled rotation failed; retrying")
            }
        }
    }
    Ok(rotated)
}

/// Releases a cleanup that cannot finish (platform admins, with a reason):
/// the instance is forgotten, whatever is left on the cluster stays.
pub async fn abandon_cleanup(
    directory: &Directory,
    ctx: &RequestCtx,
    id: &str,
    why: &str,
) -> ApiResult<TenantRow> {
    let why = reason(Some(why), true)?.unwrap_or_default();
    change_spec(
        directory,
        ctx,
        id,
        &[Role::PlatformAdmin],
        "tenant.instance.abandon_cleanup",
        |spec, row| {
            if !row.delete_requested {
                return Err(ApiError::conflict(
                    "id",
                    "only the cleanup of a cancelled tenant's instance can be abandoned",
                ));
            }
            spec.abandon_cleanup = true;
            Ok(("cleanup".into(), format!("abandoned: {why}")))
        },
    )
    .await
}

/// Carries every unsynced wish to the cluster once; returns how many were
/// sent. Each tenant succeeds or fails on its own.
pub async fn sync_once(store: &Store, orch: &Orchestration) -> ApiResult<usize> {
    let tx = store.begin_system().await?;
    let rows = instance_rows::unsynced(&tx, SYNC_BATCH).await?;
    tx.commit().await?;
    let mut sent = 0;
    for row in rows {
        let outcome = match parse_spec(&row) {
            Ok(spec) => {
                let put = orch.instances.put(&spec).await;
                match (put, row.delete_requested) {
                    (Ok(()), true) => orch.instances.request_deletion(&row.tenant_id).await,
                    (other, _) => other,
                }
                .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        let tx = store.begin_system().await?;
        match outcome {
            Ok(()) => {
                instance_rows::mark_synced(&tx, &row.tenant_id, row.desired_generation).await?;
                sent += 1;
            }
            Err(e) => {
                tracing::warn!(tenant = %row.tenant_id, error = %e, "instance sync failed; retrying");
                let cut: String = e.chars().take(ERROR_MAX).collect();
                instance_rows::mark_sync_failed(&tx, &row.tenant_id, cut).await?;
            }
        }
        tx.commit().await?;
    }
    Ok(sent)
}

/// The sync, for the life of the process.
pub async fn run_sync(directory: Directory, orch: Arc<Orchestration>) {
    let mut last_rotation_check = tokio::time::Instant::now() - ROTATION_POLL;
    loop {
        if let Some(every) = orch.defaults.rotate_every {
            if last_rotation_check.elapsed() >= ROTATION_POLL {
                last_rotation_check = tokio::time::Instant::now();
                match rotate_due(&directory, every).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rotated = n, "secrets rotated on schedule"),
                    Err(e) => tracing::warn!(error = %e, "rotation schedule pass failed"),
                }
            }
        }
        match sync_once(&directory.store, &orch).await {
            Ok(n) if n as u64 == SYNC_BATCH => continue,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "instance sync pass failed"),
        }
        tokio::select! {
            _ = orch.wake.notified() => {}
            _ = tokio::time::sleep(SYNC_POLL) => {}
        }
    }
}

//! The watcher of tenants' instances: writes what the cluster reports to
//! the store (GraphQL reads it there), announces changes through the outbox,
//! activates a tenant whose instance is Ready (onboarding done), and fails
//! one whose spec cannot be satisfied at once, or (checked every 10 s, with
//! or without reports) one that misses the onboarding deadline, naming the
//! step that is not done.

use dotmac_orchestrator::resource::{ConditionType, TenantInstance};
use dotmac_schema::{Scope, TenantAction, TenantId, TenantState};
use futures::StreamExt;

use super::instances::{Observation, Orchestration};
use super::tenants::transition;
use super::Directory;
use crate::bus::{BusEvent, InstanceChanged};
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::{parse_id, REASON_MAX};
use crate::store::instance_rows;
use crate::store::tenant_rows;
use std::sync::Arc;
use std::time::Duration;

/// How often onboarding deadlines are checked (reports also check them).
const DEADLINE_POLL: Duration = Duration::from_secs(10);

/// The watcher, for the life of the process: every report of the cluster
/// recorded and acted on; a tenant whose report cannot be handled is logged
/// and skipped, never stopping the others.
pub async fn run_watch(directory: Directory, orch: Arc<Orchestration>) {
    let mut reports = orch.instances.watch();
    let mut deadlines = tokio::time::interval(DEADLINE_POLL);
    loop {
        tokio::select! {
            report = reports.next() => {
                let Some(inst) = report else { return };
                if let Err(e) = observe(&directory, &inst).await {
                    tracing::warn!(tenant = %inst.spec.tenant_id, error = %e, "instance report not recorded");
                }
            }
            _ = deadlines.tick() => {
                if let Err(e) = fail_overdue(&directory, &orch).await {
                    tracing::warn!(error = %e, "onboarding deadline check failed");
                }
            }
        }
    }
}

/// Records one report and moves the tenant's lifecycle on if it says so.
pub async fn observe(directory: &Directory, inst: &TenantInstance) -> ApiResult<()> {
    let Some(obs) = Observation::of(inst) else {
        return Ok(());
    };
    let Ok(id) = inst.spec.tenant_id.parse::<TenantId>() else {
        return Ok(());
    };
    let now = directory.clock.now();
    let tx = directory.store.begin_system().await?;
    let Ok(row) = tenant_rows::get(&tx, &Scope::All, &id).await else {
        // An instance of a tenant this platform does not know: not ours to act on.
        return Ok(());
    };
    let encoded = serde_json::to_string(&obs).map_err(|e| ApiError::internal(e.to_string()))?;
    let changed =
        instance_rows::observe(&tx, row.id.as_str(), obs.phase.as_str(), encoded, now).await?;
    if changed {
        let ready = obs
            .conditions
            .iter()
            .find(|c| c.type_ == ConditionType::Ready.as_str());
        directory
            .outbox
            .record(
                &tx,
                &[BusEvent::Instance(InstanceChanged {
                    tenant_id: row.id.clone(),
                    reseller_id: row.reseller_id.clone(),
                    phase: obs.phase,
                    ready: obs.ready(),
                    reason: ready.map(|c| c.reason.clone()),
                    message: ready.map(|c| c.message.clone()),
                    at: now,
                })],
            )
            .await?;
    }
    tx.commit().await?;
    if changed {
        directory.outbox.committed();
    }
    if row.state == TenantState::Provisioning {
        if obs.ready() {
            move_on(
                directory,
                &row.id,
                TenantAction::Activate,
                "its instance is Ready",
            )
            .await;
        } else if let Some(step) = invalid_spec(&obs) {
            move_on(directory, &row.id, TenantAction::MarkFailed, &step).await;
        }
    }
    Ok(())
}

/// A spec the cluster cannot ever satisfy fails onboarding at once.
fn invalid_spec(obs: &Observation) -> Option<String> {
    obs.conditions
        .iter()
        .find(|c| !c.ok && c.reason == "InvalidSpec")
        .map(|c| format!("{}: {} — {}", c.type_, c.reason, c.message))
}

/// Tenants still provisioning past the deadline, whatever the cluster says
/// (or does not say): failed, naming the step that is not done.
pub async fn fail_overdue(directory: &Directory, orch: &Orchestration) -> ApiResult<()> {
    let now = directory.clock.now();
    let tx = directory.store.begin_system().await?;
    let overdue =
        tenant_rows::provisioning_since_before(&tx, now - orch.defaults.onboarding_deadline, 100)
            .await?;
    let mut failing = Vec::new();
    for row in overdue {
        let id: TenantId = parse_id("id", &row.id)?;
        let Some(instance) = instance_rows::get(&tx, &Scope::All, &id).await? else {
            continue;
        };
        let step = instance
            .observed
            .as_deref()
            .and_then(|o| serde_json::from_str::<Observation>(o).ok())
            .and_then(|o| o.blocking_step())
            .or(instance.sync_error.map(|e| format!("sync: {e}")))
            .unwrap_or_else(|| "the cluster reported nothing".into());
        failing.push((
            row.id,
            format!(
                "not Ready within {} s of provisioning; {step}",
                orch.defaults.onboarding_deadline.num_seconds()
            ),
        ));
    }
    tx.commit().await?;
    for (id, step) in failing {
        move_on(directory, &id, TenantAction::MarkFailed, &step).await;
    }
    Ok(())
}

/// Applies a lifecycle action as the orchestrator; a tenant that moved on
/// meanwhile (another process acted first) is left as it is.
async fn move_on(directory: &Directory, id: &str, action: TenantAction, why: &str) {
    let ctx = RequestCtx::system("orchestrator");
    let why: String = why.chars().take(REASON_MAX).collect();
    match transition(directory, &ctx, id, action, Some(&why)).await {
        Ok(_) => {
            tracing::info!(tenant = %id, ?action, reason = %why, "tenant moved on by its instance")
        }
        Err(e) => tracing::debug!(tenant = %id, ?action, error = %e, "tenant not moved on"),
    }
}

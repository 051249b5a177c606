//! Rolling a new framework version out across tenants in waves: each wave's
//! instances are upgraded and watched until they run the version (or are
//! scaled to zero with it); an instance rolled back (its rollout missed the
//! progress deadline) or a wave that does not finish in time stops the
//! rollout, leaving later tenants on their version. Re-running a rollout
//! skips tenants already on the version, so a stopped or interrupted one
//! continues where it stopped.
//!
//! A rollout is a row of `instance_rollouts` ([`start`]) whose runner
//! ([`run`]) reports each wave and a heartbeat to it and announces them on
//! the bus (GraphQL's `instanceRolloutProgress`); one whose runner went
//! silent (its process stopped) reads as interrupted.

use std::time::Duration;

use chrono::{DateTime, Utc};
use dotmac_orchestrator::Phase;
use dotmac_schema::{Role, RolloutId, RolloutState, Scope};

use super::instances::{self, Observation};
use super::Directory;
use crate::bus::{BusEvent, RolloutChanged};
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::rollout_rows::{self, Progress, RolloutRow};
use crate::store::{instance_rows, Page, PageRequest};

/// The largest wave.
pub const MAX_WAVE: usize = 500;
/// The longest pause between waves, and the longest wave deadline.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// How often a runner reports while its wave is under way.
const HEARTBEAT: Duration = Duration::from_secs(20);
/// A running rollout not reported for this long was interrupted (its
/// process went away): a few missed heartbeats, never one slow write.
pub const SILENT_AFTER: Duration = Duration::from_secs(90);

/// How a rollout is run.
#[derive(Debug, Clone)]
pub struct RolloutPlan {
    pub version: String,
    pub wave_size: usize,
    /// Between two waves.
    pub pause: Duration,
    /// How long one wave may take before the rollout stops.
    pub wave_deadline: Duration,
}

/// Where a rollout is, reported after every wave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolloutProgress {
    pub wave: usize,
    pub waves: usize,
    pub upgraded: usize,
    pub remaining: usize,
    /// Why the rollout stopped, if it did.
    pub stopped: Option<String>,
}

/// Where one instance is in the rollout.
enum Arrival {
    There,
    Underway,
    RolledBack(String),
}

fn arrival(obs: Option<&Observation>, version: &str) -> Arrival {
    let Some(o) = obs else {
        return Arrival::Underway;
    };
    if o.rolled_back_from.as_deref() == Some(version) {
        return Arrival::RolledBack(o.blocking_step().unwrap_or_else(|| "rolled back".into()));
    }
    let current = o.current_version.as_deref() == Some(version)
        && o.observed_generation == o.generation
        && matches!(o.phase, Phase::Ready | Phase::Suspended);
    if current {
        Arrival::There
    } else {
        Arrival::Underway
    }
}

/// Checks a plan, naming the field at fault.
fn validate(plan: &RolloutPlan) -> ApiResult<()> {
    dotmac_orchestrator::builders::valid_version(&plan.version)
        .map_err(|e| ApiError::validation("version", e.to_string()))?;
    if !(1..=MAX_WAVE).contains(&plan.wave_size) {
        return Err(ApiError::validation(
            "waveSize",
            format!("must be 1 to {MAX_WAVE}"),
        ));
    }
    if plan.pause > MAX_WAIT {
        return Err(ApiError::validation(
            "pauseSeconds",
            format!("must be at most {}", MAX_WAIT.as_secs()),
        ));
    }
    if plan.wave_deadline.is_zero() || plan.wave_deadline > MAX_WAIT {
        return Err(ApiError::validation(
            "waveDeadlineSeconds",
            format!("must be 1 to {}", MAX_WAIT.as_secs()),
        ));
    }
    Ok(())
}

/// Runs `plan` (platform admins); `report` hears where it is before the
/// first wave and after every wave.
pub async fn rollout(
    directory: &Directory,
    ctx: &RequestCtx,
    plan: &RolloutPlan,
    mut report: impl FnMut(&RolloutProgress),
) -> ApiResult<RolloutProgress> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    validate(plan)?;
    let tx = directory.store.begin(&p.scope).await?;
    let mut todo = Vec::new();
    for row in instance_rows::all(&tx, &Scope::All).await? {
        let on_version =
            serde_json::from_str::<dotmac_orchestrator::TenantInstanceSpec>(&row.desired)
                .is_ok_and(|s| s.version == plan.version);
        if !row.delete_requested && !on_version {
            todo.push(row.tenant_id);
        }
    }
    tx.commit().await?;
    let waves = todo.len().div_ceil(plan.wave_size);
    let mut progress = RolloutProgress {
        wave: 0,
        waves,
        upgraded: 0,
        remaining: todo.len(),
        stopped: None,
    };
    report(&progress);
    for (n, wave) in todo.chunks(plan.wave_size).enumerate() {
        if n > 0 {
            tokio::time::sleep(plan.pause).await;
        }
        for id in wave {
            instances::upgrade(directory, ctx, id, &plan.version).await?;
        }
        let started = tokio::time::Instant::now();
        let stopped = loop {
            let tx = directory.store.begin(&p.scope).await?;
            let rows = instance_rows::get_many(&tx, &p.scope, wave).await?;
            tx.commit().await?;
            let mut underway = 0;
            let mut rolled_back = None;
            for row in &rows {
                let obs = row
                    .observed
                    .as_deref()
                    .and_then(|o| serde_json::from_str::<Observation>(o).ok());
                match arrival(obs.as_ref(), &plan.version) {
                    Arrival::There => {}
                    Arrival::Underway => underway += 1,
                    Arrival::RolledBack(why) => {
                        rolled_back = Some(format!("{}: {why}", row.tenant_id))
                    }
                }
            }
            if let Some(why) = rolled_back {
                break Some(format!("an instance was rolled back ({why})"));
            }
            if underway == 0 {
                break None;
            }
            if started.elapsed() > plan.wave_deadline {
                break Some(format!(
                    "{underway} instances of wave {} did not arrive in time",
                    n + 1
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        progress.wave = n + 1;
        progress.upgraded += wave.len();
        progress.remaining -= wave.len();
        progress.stopped = stopped;
        report(&progress);
        if progress.stopped.is_some() {
            break;
        }
    }
    Ok(progress)
}

/// Records a new rollout of `plan` as running (platform admins), after
/// marking silent ones interrupted; CONFLICT while another runs. Audited.
/// Its runner is [`run`].
pub async fn start(
    directory: &Directory,
    ctx: &RequestCtx,
    plan: &RolloutPlan,
) -> ApiResult<RolloutRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    validate(plan)?;
    if directory.orchestration.is_none() {
        return Err(ApiError::conflict(
            "version",
            "no cluster is configured (orchestrator.target): tenants have no instances",
        ));
    }
    let now = directory.clock.now();
    let as_i64 = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let row = RolloutRow {
        id: RolloutId::new().to_string(),
        version: plan.version.clone(),
        wave_size: i32::try_from(plan.wave_size).unwrap_or(i32::MAX),
        pause_secs: as_i64(plan.pause),
        wave_deadline_secs: as_i64(plan.wave_deadline),
        state: RolloutState::Running,
        wave: 0,
        waves: 0,
        upgraded: 0,
        remaining: 0,
        stopped_reason: None,
        started_by: p.actor(),
        started_at: now,
        updated_at: now,
        finished_at: None,
    };
    let tx = directory.store.begin(&p.scope).await?;
    rollout_rows::interrupt_silent(&tx, silent_since(now), now).await?;
    let row = rollout_rows::insert(&tx, row).await?;
    audit_log::record(
        &tx,
        now,
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "instance.rollout.start",
            tenant_id: None,
            reseller_id: None,
            object_id: Some(row.id.clone()),
            before: None,
            after: Some(format!(
                "version {} in waves of {}, {} s apart",
                row.version, row.wave_size, row.pause_secs
            )),
        },
    )
    .await?;
    directory
        .outbox
        .record(&tx, &[BusEvent::Rollout(changed(&row, now))])
        .await?;
    tx.commit().await?;
    directory.outbox.committed();
    Ok(row)
}

fn silent_since(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::Duration::from_std(SILENT_AFTER).unwrap_or_default()
}

pub(crate) fn changed(row: &RolloutRow, at: DateTime<Utc>) -> RolloutChanged {
    RolloutChanged {
        rollout_id: row.id.clone(),
        state: row.state,
        wave: row.wave,
        waves: row.waves,
        upgraded: row.upgraded,
        remaining: row.remaining,
        stopped_reason: row.stopped_reason.clone(),
        at,
    }
}

fn as_progress(p: &RolloutProgress) -> Progress {
    let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    Progress {
        wave: n(p.wave),
        waves: n(p.waves),
        upgraded: n(p.upgraded),
        remaining: n(p.remaining),
    }
}

/// Writes the runner's report to the rollout's row and announces it (a
/// heartbeat when nothing moved). Whether the rollout still runs.
async fn persist(
    directory: &Directory,
    id: &str,
    progress: &RolloutProgress,
    end: Option<(RolloutState, Option<String>)>,
) -> ApiResult<bool> {
    let now = directory.clock.now();
    let tx = directory.store.begin(&Scope::All).await?;
    let running = rollout_rows::report(&tx, id, as_progress(progress), now).await?;
    if let Some((state, reason)) = end {
        rollout_rows::finish(&tx, id, state, reason, now).await?;
    }
    if let Some(row) = rollout_rows::get(&tx, id).await? {
        directory
            .outbox
            .record(&tx, &[BusEvent::Rollout(changed(&row, now))])
            .await?;
    }
    tx.commit().await?;
    directory.outbox.committed();
    Ok(running)
}

/// Runs a started rollout to its end, as the platform's `rollout` job (each
/// upgrade is audited as `system:rollout`; the start named the admin),
/// reporting to its row before the first wave, after every wave and every
/// [`HEARTBEAT`] between; `report` hears the same. Ends the row completed,
/// or stopped with the reason (a rollback, a late wave, an error).
pub async fn run(
    directory: &Directory,
    row: &RolloutRow,
    mut report: impl FnMut(&RolloutProgress),
) -> ApiResult<RolloutProgress> {
    let plan = RolloutPlan {
        version: row.version.clone(),
        wave_size: usize::try_from(row.wave_size).unwrap_or(1),
        pause: Duration::from_secs(u64::try_from(row.pause_secs).unwrap_or(0)),
        wave_deadline: Duration::from_secs(u64::try_from(row.wave_deadline_secs).unwrap_or(1)),
    };
    let ctx = RequestCtx::system("rollout");
    let initial = RolloutProgress {
        wave: 0,
        waves: 0,
        upgraded: 0,
        remaining: 0,
        stopped: None,
    };
    let (sender, mut heard) = tokio::sync::watch::channel(initial);
    let work = rollout(directory, &ctx, &plan, |p| {
        report(p);
        sender.send_replace(p.clone());
    });
    let reporter = async {
        loop {
            tokio::select! {
                _ = heard.changed() => {}
                _ = tokio::time::sleep(HEARTBEAT) => {}
            }
            let now = heard.borrow_and_update().clone();
            match persist(directory, &row.id, &now, None).await {
                Ok(true) => {}
                // Interrupted meanwhile (this runner was taken for gone).
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(rollout = %row.id, error = %e, "rollout report failed; retried on the next")
                }
            }
        }
    };
    let outcome = tokio::select! {
        biased;
        outcome = work => outcome,
        () = reporter => Err(ApiError::conflict("id", "the rollout was taken for interrupted")),
    };
    let (last, end) = match &outcome {
        Ok(p) => (
            p.clone(),
            match &p.stopped {
                None => (RolloutState::Completed, None),
                Some(why) => (RolloutState::Stopped, Some(why.clone())),
            },
        ),
        Err(e) => (
            heard.borrow().clone(),
            (RolloutState::Stopped, Some(e.to_string())),
        ),
    };
    persist(directory, &row.id, &last, Some(end)).await?;
    outcome
}

/// Rollouts are read by platform admins alone.
fn platform_reader(ctx: &RequestCtx) -> ApiResult<&dotmac_schema::Principal> {
    let p = ctx.principal()?;
    if p.role() != Some(Role::PlatformAdmin) {
        return Err(ApiError::Forbidden(
            "rollouts are platform admins' business".into(),
        ));
    }
    Ok(p)
}

/// One rollout (platform admins); one whose runner went silent reads as
/// interrupted.
pub async fn get(directory: &Directory, ctx: &RequestCtx, id: &str) -> ApiResult<RolloutRow> {
    let p = platform_reader(ctx)?;
    let id: RolloutId = id
        .parse()
        .map_err(|e: dotmac_schema::IdError| ApiError::validation("id", e.to_string()))?;
    let now = directory.clock.now();
    let tx = directory.store.begin(&p.scope).await?;
    rollout_rows::interrupt_silent(&tx, silent_since(now), now).await?;
    let row = rollout_rows::get(&tx, id.as_str()).await?;
    tx.commit().await?;
    row.ok_or(ApiError::not_found("rollout"))
}

/// Rollouts, oldest first (platform admins).
pub async fn list(
    directory: &Directory,
    ctx: &RequestCtx,
    page: PageRequest<'_>,
) -> ApiResult<Page<RolloutRow>> {
    let p = platform_reader(ctx)?;
    let now = directory.clock.now();
    let tx = directory.store.begin(&p.scope).await?;
    rollout_rows::interrupt_silent(&tx, silent_since(now), now).await?;
    let page = rollout_rows::list(&tx, page).await?;
    tx.commit().await?;
    Ok(page)
}

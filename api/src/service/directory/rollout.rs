//! Rolling a new framework version out across tenants in waves: each wave's
//! instances are upgraded and watched until they run the version (or are
//! scaled to zero with it); an instance rolled back (its rollout missed the
//! progress deadline) or a wave that does not finish in time stops the
//! rollout, leaving later tenants on their version. Re-running a rollout
//! skips tenants already on the version, so a stopped or interrupted one
//! continues where it stopped.

use std::time::Duration;

use dotmac_orchestrator::Phase;
use dotmac_schema::{Role, Scope};

use super::instances::{self, Observation};
use super::Directory;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::store::instance_rows;

/// The largest wave.
pub const MAX_WAVE: usize = 500;

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

/// Runs `plan` (platform admins); `report` hears every wave's progress.
pub async fn rollout(
    directory: &Directory,
    ctx: &RequestCtx,
    plan: &RolloutPlan,
    mut report: impl FnMut(&RolloutProgress),
) -> ApiResult<RolloutProgress> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    dotmac_orchestrator::builders::valid_version(&plan.version)
        .map_err(|e| ApiError::validation("version", e.to_string()))?;
    if !(1..=MAX_WAVE).contains(&plan.wave_size) {
        return Err(ApiError::validation(
            "waveSize",
            format!("must be 1 to {MAX_WAVE}"),
        ));
    }
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

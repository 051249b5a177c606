//! Operators' changes of tenants' instances (upgrade, secret rotation,
//! abandoning a stuck cleanup, rollouts of a version in waves) and the
//! streams of instance changes and rollout progress; the instance itself is
//! read as `Tenant.instance` (see `instance_views`).

use std::time::Duration;

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use dotmac_schema::{RolloutId, RolloutState};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::directory::Tenant;
use super::{connection, covers, ctx, page_request, token_expiry, Result};
use crate::bus::{BusEvent, InstanceChanged, RolloutChanged};
use crate::service::directory::instances;
use crate::service::directory::rollout::{self, RolloutPlan};
use crate::store::rollout_rows::RolloutRow;

/// A rollout of a framework version across tenants' instances, in waves.
#[derive(SimpleObject)]
pub struct InstanceRollout {
    pub id: ID,
    pub version: String,
    pub wave_size: i32,
    pub pause_seconds: i64,
    pub wave_deadline_seconds: i64,
    pub state: RolloutState,
    /// Waves done, of `waves`.
    pub wave: i32,
    pub waves: i32,
    /// Tenants moved to the version, and tenants still to move.
    pub upgraded: i32,
    pub remaining: i32,
    /// Why it stopped (the rolled-back tenant and its failing step, the
    /// late wave, the error), or was interrupted.
    pub stopped_reason: Option<String>,
    /// Who started it (`system:rollout` for `dotmac orchestrate rollout`).
    pub started_by: String,
    pub started_at: DateTime<Utc>,
    /// Its runner's last report.
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<RolloutRow> for InstanceRollout {
    fn from(r: RolloutRow) -> Self {
        InstanceRollout {
            id: ID(r.id),
            version: r.version,
            wave_size: r.wave_size,
            pause_seconds: r.pause_secs,
            wave_deadline_seconds: r.wave_deadline_secs,
            state: r.state,
            wave: r.wave,
            waves: r.waves,
            upgraded: r.upgraded,
            remaining: r.remaining,
            stopped_reason: r.stopped_reason,
            started_by: r.started_by,
            started_at: r.started_at,
            updated_at: r.updated_at,
            finished_at: r.finished_at,
        }
    }
}

/// Where a rollout is now (its progress stream's items).
#[derive(SimpleObject)]
pub struct RolloutProgressEvent {
    pub rollout_id: ID,
    pub state: RolloutState,
    pub wave: i32,
    pub waves: i32,
    pub upgraded: i32,
    pub remaining: i32,
    pub stopped_reason: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<RolloutChanged> for RolloutProgressEvent {
    fn from(e: RolloutChanged) -> Self {
        RolloutProgressEvent {
            rollout_id: ID(e.rollout_id),
            state: e.state,
            wave: e.wave,
            waves: e.waves,
            upgraded: e.upgraded,
            remaining: e.remaining,
            stopped_reason: e.stopped_reason,
            at: e.at,
        }
    }
}

/// A rollout to start.
#[derive(InputObject)]
pub struct StartInstanceRolloutInput {
    /// The framework version every tenant's instance moves to.
    pub version: String,
    /// Tenants upgraded at once (1 to 500).
    pub wave_size: i32,
    /// Seconds between two waves (default 60).
    pub pause_seconds: Option<i32>,
    /// Seconds one wave may take before the rollout stops (default: twice
    /// `orchestrator.progress_deadline_secs`).
    pub wave_deadline_seconds: Option<i32>,
}

#[derive(Default)]
pub struct InstanceQuery;

#[Object]
impl InstanceQuery {
    /// Rollouts of framework versions, oldest first (platform admins).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn instance_rollouts(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, InstanceRollout>> {
        let (app, rc) = ctx(gctx);
        let page = page_request::<RolloutId>(first, after.as_deref())?;
        let rows = rollout::list(&app.directory, rc, page).await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            InstanceRollout::from,
        ))
    }

    /// One rollout (platform admins).
    async fn instance_rollout(&self, gctx: &Context<'_>, id: ID) -> Result<InstanceRollout> {
        let (app, rc) = ctx(gctx);
        Ok(rollout::get(&app.directory, rc, &id).await?.into())
    }
}

#[derive(Default)]
pub struct InstanceMutation;

#[Object]
impl InstanceMutation {
    /// Moves a tenant's instance to a framework version (platform admins);
    /// a version that misses its progress deadline is rolled back.
    async fn upgrade_tenant_instance(
        &self,
        gctx: &Context<'_>,
        id: ID,
        version: String,
    ) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        Ok(Tenant::single(
            instances::upgrade(&app.directory, rc, &id, &version).await?,
        ))
    }

    /// New secrets for the tenant's instance (platform admins, and the
    /// tenant's own admins); the previous version stays readable until the
    /// instance has moved to the new one.
    async fn rotate_tenant_secrets(&self, gctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        Ok(Tenant::single(
            instances::rotate_secrets(&app.directory, rc, &id).await?,
        ))
    }

    /// Gives up a cleanup that cannot finish (platform admins, with a
    /// reason): the instance is released, what is left stays.
    async fn abandon_instance_cleanup(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        Ok(Tenant::single(
            instances::abandon_cleanup(&app.directory, rc, &id, &reason).await?,
        ))
    }

    /// Starts moving every tenant's instance to a version in waves
    /// (platform admins; one rollout at a time). Answers at once; follow it
    /// with `instanceRolloutProgress` or `instanceRollout`. A rolled-back
    /// instance or a late wave stops it; starting the version again
    /// continues, skipping tenants already on it.
    async fn start_instance_rollout(
        &self,
        gctx: &Context<'_>,
        input: StartInstanceRolloutInput,
    ) -> Result<InstanceRollout> {
        let (app, rc) = ctx(gctx);
        let seconds = |v: Option<i32>, default: u64, field: &str| {
            v.map_or(Ok(default), |s| {
                u64::try_from(s)
                    .map_err(|_| crate::error::ApiError::validation(field, "must not be negative"))
            })
        };
        let default_deadline =
            2 * u64::try_from(app.config.orchestrator.progress_deadline_secs).unwrap_or(600);
        let plan = RolloutPlan {
            version: input.version,
            wave_size: usize::try_from(input.wave_size).unwrap_or(0),
            pause: Duration::from_secs(seconds(input.pause_seconds, 60, "pauseSeconds")?),
            wave_deadline: Duration::from_secs(seconds(
                input.wave_deadline_seconds,
                default_deadline,
                "waveDeadlineSeconds",
            )?),
        };
        let row = rollout::start(&app.directory, rc, &plan).await?;
        let directory = app.directory.clone();
        let runner = row.clone();
        tokio::spawn(async move {
            if let Err(e) = rollout::run(&directory, &runner, |_| {}).await {
                tracing::warn!(rollout = %runner.id, error = %e, "rollout stopped");
            }
        });
        Ok(row.into())
    }
}

/// An instance reported a new status.
#[derive(SimpleObject)]
pub struct InstanceEvent {
    pub tenant_id: ID,
    pub phase: super::instance_views::InstancePhase,
    pub ready: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<InstanceChanged> for InstanceEvent {
    fn from(e: InstanceChanged) -> Self {
        InstanceEvent {
            tenant_id: ID(e.tenant_id),
            phase: super::instance_views::InstancePhase::of(e.phase),
            ready: e.ready,
            reason: e.reason,
            message: e.message,
            at: e.at,
        }
    }
}

#[derive(Default)]
pub struct InstanceSubscription;

#[Subscription]
impl InstanceSubscription {
    /// Status changes of the instances of tenants in the caller's scope.
    async fn instance_events(
        &self,
        gctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = InstanceEvent>> {
        let (app, rc) = ctx(gctx);
        let scope = rc.principal()?.scope.clone();
        let events = BroadcastStream::new(app.bus.subscribe()).take_until(token_expiry(app, rc));
        Ok(events.filter_map(move |e| {
            let visible = match e {
                Ok(BusEvent::Instance(e))
                    if covers(&scope, &e.tenant_id, e.reseller_id.as_deref()) =>
                {
                    Some(e.into())
                }
                _ => None,
            };
            async move { visible }
        }))
    }

    /// Where a rollout is (platform admins): its state now, then every
    /// wave, heartbeat and its end, after which the stream ends.
    async fn instance_rollout_progress(
        &self,
        gctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<impl Stream<Item = RolloutProgressEvent>> {
        let (app, rc) = ctx(gctx);
        // Subscribed before reading, so nothing falls between the two.
        let events = BroadcastStream::new(app.bus.subscribe()).take_until(token_expiry(app, rc));
        let now = rollout::get(&app.directory, rc, &id).await?;
        let first = RolloutProgressEvent::from(rollout::changed(&now, now.updated_at));
        let finished = first.state != RolloutState::Running;
        let id = now.id;
        let mine = events
            .filter_map(move |e| {
                let mine = match e {
                    Ok(BusEvent::Rollout(e)) if e.rollout_id == id => {
                        Some(RolloutProgressEvent::from(e))
                    }
                    _ => None,
                };
                async move { mine }
            })
            .boxed();
        // Announcements made before the read may still be on their way:
        // one behind what was read is skipped, so progress only moves
        // forward. The event that ends the rollout is the stream's last.
        let updates = futures::stream::unfold(
            (mine, first.wave, false),
            |(mut mine, mut wave, ended)| async move {
                if ended {
                    return None;
                }
                let e = loop {
                    let e = mine.next().await?;
                    if e.wave >= wave || e.state != RolloutState::Running {
                        break e;
                    }
                };
                wave = e.wave;
                let ended = e.state != RolloutState::Running;
                Some((e, (mine, wave, ended)))
            },
        );
        let rest = if finished {
            futures::stream::empty().boxed()
        } else {
            updates.boxed()
        };
        Ok(futures::stream::once(async move { first }).chain(rest))
    }
}

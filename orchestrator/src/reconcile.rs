//! One reconcile of one instance, against the two ports ([`Cluster`],
//! [`SecretVault`]): the same code runs in `dotmac orchestrate` (Kubernetes,
//! OpenBao) and in `dotmac dev` (local recorder, local secret store).
//!
//! Order: secrets → every child applied (only when what is wanted changed,
//! or a resync is due) → sweep of children no longer wanted → the workload
//! read → one status write, only when the status changed. Deletion runs the
//! ordered cleanup instead (scale to zero → revoke secrets → delete the
//! namespace → wait → release), one idempotent step per pass.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dotmac_schema::Clock;
use kube::api::ObjectMeta;
use kube::Resource;

use crate::builders::{self, ChildKind};
use crate::cluster::{Cluster, WorkloadState};
use crate::resource::{
    ChildRef, Condition, ConditionType, Phase, TenantInstance, TenantInstanceStatus, FINALIZER,
};
use crate::secrets::SecretVault;
use crate::{Error, Settings};

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Look again after this long (or sooner, on a change).
    Requeue(Duration),
    /// The finalizer was released: the instance is gone.
    Released,
}

/// What one reconcile needs.
pub struct Deps<'a> {
    pub cluster: &'a dyn Cluster,
    pub vault: &'a dyn SecretVault,
    pub settings: &'a Settings,
    pub clock: &'a dyn Clock,
}

/// The step a failing child belongs to, for its condition.
fn step_of(kind: ChildKind) -> ConditionType {
    match kind {
        ChildKind::Namespace | ChildKind::ResourceQuota | ChildKind::LimitRange => {
            ConditionType::QuotaApplied
        }
        ChildKind::NetworkPolicy => ConditionType::NetworkIsolated,
        ChildKind::ServiceAccount | ChildKind::Secret => ConditionType::SecretsSynced,
        ChildKind::Deployment | ChildKind::Service | ChildKind::Ingress => {
            ConditionType::WorkloadAvailable
        }
    }
}

/// Sets a condition; its transition time moves only when its status does.
pub fn set_condition(
    status: &mut TenantInstanceStatus,
    type_: ConditionType,
    ok: bool,
    reason: &str,
    message: String,
    generation: i64,
    now: DateTime<Utc>,
) {
    let word = if ok { "True" } else { "False" };
    match status.conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            if c.status != word {
                c.status = word.to_owned();
                c.last_transition_time = now.to_rfc3339();
            }
            c.reason = reason.to_owned();
            c.message = message;
            c.observed_generation = generation;
        }
        None => status.conditions.push(Condition {
            type_,
            status: word.to_owned(),
            reason: reason.to_owned(),
            message,
            last_transition_time: now.to_rfc3339(),
            observed_generation: generation,
        }),
    }
}

/// Reconciles one instance.
pub async fn reconcile(inst: &TenantInstance, deps: &Deps<'_>) -> Result<Outcome, Error> {
    let name = inst.meta().name.clone().unwrap_or_default();
    let spec = &inst.spec;
    let generation = inst.meta().generation.unwrap_or(0);
    let now = deps.clock.now();
    let old = inst.status.clone().unwrap_or_default();
    let mut st = old.clone();
    st.observed_generation = generation;

    if inst.meta().deletion_timestamp.is_some() {
        return cleanup(inst, &name, st, deps).await;
    }
    if !has_finalizer(inst.meta()) {
        deps.cluster.set_finalizer(inst, true).await?;
    }
    let ns = match builders::namespace_for(&spec.tenant_id) {
        Ok(ns) => ns,
        Err(e) => return invalid_spec(deps, &name, &old, st, &e, now).await,
    };
    st.namespace = Some(ns.clone());

    let secrets = match deps
        .vault
        .ensure(&spec.tenant_id, spec.secrets_generation)
        .await
    {
        Ok(s) => s,
        Err(e) => {
            set_condition(
                &mut st,
                ConditionType::SecretsSynced,
                false,
                "SecretStoreUnavailable",
                e.to_string(),
                generation,
                now,
            );
            set_condition(
                &mut st,
                ConditionType::Ready,
                false,
                "SecretsSynced",
                "the secret store did not answer; retrying".into(),
                generation,
                now,
            );
            st.phase = degraded_or_provisioning(&old);
            write_if_changed(deps, &name, &old, &st).await?;
            return Err(e);
        }
    };

    // A rollout that missed its deadline is rolled back and stays so until
    // the spec asks for another version.
    let rolled_back = old.rolled_back_from.as_deref() == Some(spec.version.as_str());
    if !rolled_back {
        st.rolled_back_from = None;
    }
    let run_version = match (&old.current_version, rolled_back) {
        (Some(previous), true) => previous.clone(),
        _ => spec.version.clone(),
    };
    let owner = inst.controller_owner_ref(&());
    let desired = builders::children(spec, &run_version, &secrets, deps.settings, owner.as_ref());
    let desired = match desired {
        Ok(d) => d,
        Err(e) => return invalid_spec(deps, &name, &old, st, &e, now).await,
    };
    let digest = builders::digest(&desired, secrets.version);
    let resync_due = old
        .applied_at
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| {
            now.signed_duration_since(t).to_std().unwrap_or_default() >= deps.settings.resync_every
        })
        .unwrap_or(true);
    if old.applied_digest.as_deref() != Some(digest.as_str()) || resync_due {
        for child in &desired {
            if let Err(e) = deps.cluster.apply(child).await {
                let step = step_of(child.kind);
                let message = format!("{} {}: {e}", child.kind.as_str(), child.name);
                set_condition(
                    &mut st,
                    step,
                    false,
                    "ApplyFailed",
                    message.clone(),
                    generation,
                    now,
                );
                set_condition(
                    &mut st,
                    ConditionType::Ready,
                    false,
                    step.as_str(),
                    message,
                    generation,
                    now,
                );
                st.phase = degraded_or_provisioning(&old);
                write_if_changed(deps, &name, &old, &st).await?;
                return Err(e);
            }
        }
        st.applied_digest = Some(digest);
        st.applied_at = Some(now.to_rfc3339());
        st.secrets_version = secrets.version;
    }
    let wanted: BTreeSet<ChildRef> = desired.iter().map(|c| c.reference()).collect();
    // Sweep: what this controller applied before and the spec no longer wants.
    // Only names recorded in this instance's own status are ever deleted,
    // never the result of a list (an empty or failed list deletes nothing).
    for gone in old.children.iter().filter(|c| !wanted.contains(c)) {
        if gone.kind == ChildKind::Namespace.as_str() {
            continue;
        }
        deps.cluster.delete_child(gone).await?;
    }
    st.children = wanted.into_iter().collect();
    set_condition(
        &mut st,
        ConditionType::QuotaApplied,
        true,
        "Applied",
        format!("tier {:?} quota and limits applied", spec.tier),
        generation,
        now,
    );
    set_condition(
        &mut st,
        ConditionType::NetworkIsolated,
        true,
        "Applied",
        "default deny with the instance's allows".into(),
        generation,
        now,
    );
    set_condition(
        &mut st,
        ConditionType::SecretsSynced,
        true,
        "Delivered",
        format!("secrets version {} delivered", secrets.version),
        generation,
        now,
    );

    let workload = deps.cluster.workload(&ns).await?.unwrap_or_default();
    let running_version = workload
        .version
        .clone()
        .unwrap_or_else(|| run_version.clone());
    if !rolled_back
        && workload.deadline_exceeded
        && running_version == spec.version
        && old
            .current_version
            .as_deref()
            .is_some_and(|v| v != spec.version)
    {
        // The new version did not come up in time: put the previous one back.
        let previous = old.current_version.clone().unwrap_or_default();
        let back = builders::children(spec, &previous, &secrets, deps.settings, owner.as_ref())?;
        if let Some(deployment) = back.iter().find(|c| c.kind == ChildKind::Deployment) {
            deps.cluster.apply(deployment).await?;
        }
        st.rolled_back_from = Some(spec.version.clone());
        st.applied_digest = None;
        set_condition(
            &mut st,
            ConditionType::WorkloadAvailable,
            false,
            "RolledBack",
            format!(
                "version {} missed its progress deadline; {} was put back",
                spec.version, previous
            ),
            generation,
            now,
        );
        set_condition(
            &mut st,
            ConditionType::Ready,
            false,
            "RolledBack",
            format!("upgrade to {} rolled back to {}", spec.version, previous),
            generation,
            now,
        );
        st.phase = Phase::Degraded;
        write_if_changed(deps, &name, &old, &st).await?;
        return Ok(Outcome::Requeue(deps.settings.resync_every));
    }
    if workload.rolled_out() && st.current_version.as_deref() != Some(running_version.as_str()) {
        st.previous_version = st.current_version.take();
        st.current_version = Some(running_version.clone());
    }
    let available = workload.rolled_out() && workload.available_replicas >= 1;
    st.phase = if spec.suspended {
        Phase::Suspended
    } else if st.rolled_back_from.is_some() {
        Phase::Degraded
    } else if available && st.current_version.as_deref() == Some(spec.version.as_str()) {
        Phase::Ready
    } else if st.current_version.is_some()
        && st.current_version.as_deref() != Some(spec.version.as_str())
    {
        Phase::Upgrading
    } else if old.ready_since.is_some() && !available {
        Phase::Degraded
    } else {
        Phase::Provisioning
    };
    let (w_ok, w_reason, w_msg) = workload_condition(spec.suspended, &workload);
    set_condition(
        &mut st,
        ConditionType::WorkloadAvailable,
        w_ok,
        w_reason,
        w_msg,
        generation,
        now,
    );
    let ready = matches!(st.phase, Phase::Ready | Phase::Suspended);
    let (r_reason, r_msg) = match st.phase {
        Phase::Degraded if st.rolled_back_from.is_some() => (
            "RolledBack",
            format!(
                "upgrade to {} rolled back to {}; ask for another version to retry",
                spec.version,
                st.current_version
                    .as_deref()
                    .unwrap_or("the previous version")
            ),
        ),
        Phase::Ready => ("Ready", format!("version {} serving", spec.version)),
        Phase::Suspended => ("Suspended", "scaled to zero; data kept".to_owned()),
        Phase::Upgrading => ("Upgrading", format!("rolling out {}", spec.version)),
        Phase::Degraded => (
            "WorkloadAvailable",
            "the workload is not available".to_owned(),
        ),
        _ => (
            "WorkloadAvailable",
            "waiting for the workload to become available".to_owned(),
        ),
    };
    set_condition(
        &mut st,
        ConditionType::Ready,
        ready,
        r_reason,
        r_msg,
        generation,
        now,
    );
    if st.phase == Phase::Ready && st.ready_since.is_none() {
        st.ready_since = Some(now.to_rfc3339());
    }
    write_if_changed(deps, &name, &old, &st).await?;
    Ok(Outcome::Requeue(
        if st.phase == Phase::Ready || st.phase == Phase::Suspended {
            deps.settings.resync_every
        } else {
            deps.settings.poll_while_pending
        },
    ))
}

/// A spec no reconcile can satisfy: the status says why, and the instance
/// waits for a new spec (it is looked at again only at the resync).
async fn invalid_spec(
    deps: &Deps<'_>,
    name: &str,
    old: &TenantInstanceStatus,
    mut st: TenantInstanceStatus,
    e: &Error,
    now: DateTime<Utc>,
) -> Result<Outcome, Error> {
    let generation = st.observed_generation;
    set_condition(
        &mut st,
        ConditionType::Ready,
        false,
        "InvalidSpec",
        e.to_string(),
        generation,
        now,
    );
    st.phase = Phase::Degraded;
    write_if_changed(deps, name, old, &st).await?;
    Ok(Outcome::Requeue(deps.settings.resync_every))
}

fn degraded_or_provisioning(old: &TenantInstanceStatus) -> Phase {
    if old.ready_since.is_some() {
        Phase::Degraded
    } else {
        Phase::Provisioning
    }
}

fn workload_condition(suspended: bool, w: &WorkloadState) -> (bool, &'static str, String) {
    if suspended {
        return (
            w.available_replicas == 0,
            "ScaledToZero",
            format!("{} replicas still available", w.available_replicas),
        );
    }
    if w.deadline_exceeded {
        return (
            false,
            "ProgressDeadlineExceeded",
            "the rollout missed its progress deadline".into(),
        );
    }
    if w.rolled_out() && w.available_replicas >= 1 {
        (
            true,
            "Available",
            format!(
                "{} of {} replicas available",
                w.available_replicas, w.desired_replicas
            ),
        )
    } else {
        (
            false,
            "Progressing",
            format!(
                "{} of {} replicas available",
                w.available_replicas,
                w.desired_replicas.max(1)
            ),
        )
    }
}

fn has_finalizer(meta: &ObjectMeta) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Conditions compared without their timestamps: a status that only moved in
/// time is not written again.
async fn write_if_changed(
    deps: &Deps<'_>,
    name: &str,
    old: &TenantInstanceStatus,
    new: &TenantInstanceStatus,
) -> Result<(), Error> {
    if old != new {
        deps.cluster.write_status(name, new).await?;
    }
    Ok(())
}

/// The finalizer's ordered cleanup; each pass does what is left and says so
/// in the `CleanedUp` condition.
async fn cleanup(
    inst: &TenantInstance,
    name: &str,
    mut st: TenantInstanceStatus,
    deps: &Deps<'_>,
) -> Result<Outcome, Error> {
    let old = inst.status.clone().unwrap_or_default();
    let generation = st.observed_generation;
    let now = deps.clock.now();
    let spec = &inst.spec;
    if !has_finalizer(inst.meta()) {
        return Ok(Outcome::Released);
    }
    st.phase = Phase::Terminating;
    let progress = |st: &mut TenantInstanceStatus, done: bool, reason: &str, message: String| {
        set_condition(
            st,
            ConditionType::CleanedUp,
            done,
            reason,
            message,
            generation,
            now,
        );
    };
    if spec.abandon_cleanup {
        // Released at once: a status written now would only make the
        // release's compare-and-set on the finalizers fail once.
        tracing::warn!(instance = %name, "cleanup abandoned by a platform admin; what was left is not deleted");
        deps.cluster.set_finalizer(inst, false).await?;
        return Ok(Outcome::Released);
    }
    if spec.deletion_protection {
        progress(
            &mut st,
            false,
            "DeletionProtected",
            "deletion protection is on: nothing is cleaned up until it is turned off".into(),
        );
        write_if_changed(deps, name, &old, &st).await?;
        return Ok(Outcome::Requeue(deps.settings.resync_every));
    }
    let ns = builders::namespace_for(&spec.tenant_id)?;
    // 1. Scale to zero, so nothing runs while its secrets are revoked.
    if deps.cluster.namespace_present(&ns).await? {
        let mut down = spec.clone();
        down.suspended = true;
        let secrets = crate::secrets::TenantSecrets {
            version: old.secrets_version,
            values: Default::default(),
        };
        let owner = inst.controller_owner_ref(&());
        let version = old
            .current_version
            .clone()
            .unwrap_or_else(|| spec.version.clone());
        let kids = builders::children(&down, &version, &secrets, deps.settings, owner.as_ref())?;
        let workload = deps.cluster.workload(&ns).await?;
        if workload.as_ref().is_some_and(|w| w.desired_replicas > 0) {
            if let Some(d) = kids.iter().find(|c| c.kind == ChildKind::Deployment) {
                deps.cluster.apply(d).await?;
            }
            progress(
                &mut st,
                false,
                "ScaledDown",
                "the workload was scaled to zero".into(),
            );
        }
    }
    // 2. Revoke the tenant's credentials and secrets.
    deps.vault.revoke(&spec.tenant_id).await?;
    // 3. Delete the namespace (and with it every namespaced child).
    if deps.cluster.namespace_present(&ns).await? {
        deps.cluster
            .delete_child(&ChildRef {
                kind: ChildKind::Namespace.as_str().into(),
                namespace: None,
                name: ns.clone(),
            })
            .await?;
        // 4. Wait for it to finish terminating.
        if deps.cluster.namespace_present(&ns).await? {
            progress(
                &mut st,
                false,
                "NamespaceTerminating",
                format!("secrets revoked; waiting for namespace {ns} to finish terminating"),
            );
            write_if_changed(deps, name, &old, &st).await?;
            return Ok(Outcome::Requeue(deps.settings.poll_while_pending));
        }
    }
    // 5. Release (no status first: the instance is going, and a write
    // would fail the finalizers' compare-and-set once).
    deps.cluster.set_finalizer(inst, false).await?;
    Ok(Outcome::Released)
}

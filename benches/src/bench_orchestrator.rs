//! Benchmark of issue #14, the orchestrator, on the real Kubernetes 1.20 API
//! server of `deploy/local/kubernetes.sh` (its kube-controller-manager, and
//! the harness kubelet of `dotmac_orchestrator::testkit`) and the OpenBao of
//! `deploy/local/openbao.sh`, in one run and one process:
//!
//! 1. onboarding: N tenants' `TenantInstance`s declared on a fresh shard
//!    while the controller runs in this process; for each tenant the time
//!    from its put to the first Ready the bench observes (one list of the
//!    shard every 200 ms, never a get per tenant), p50/p99, and the wall
//!    times to every instance's children applied and to every one Ready;
//! 2. the controller's requests (writes and one-shot reads, not watches)
//!    per tenant, against the least any controller can do: one server-side
//!    apply per child and one status write;
//! 3. a raw loop doing the same work for N other tenants with the same
//!    concurrency and no controller (put, OpenBao `ensure`, one apply per
//!    child, one status write), and the operator's throughput against it;
//! 4. the process's RSS once the controller holds N + `--idle-instances`
//!    instances (the idle ones suspended, so they run no pods);
//! 5. cleanup: every instance deleted through its finalizer, the baseline's
//!    namespaces deleted directly, each wait bounded and reported.
//!
//! Run with `deploy/local/bench-orchestrator.sh`.

/// The allocator `dotmac` itself runs with (api/src/main.rs), so the
/// controller measured here allocates as it does in production.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use dotmac_benches::proc::rss_mib;
use dotmac_orchestrator::builders::{self, Child, ChildKind, MANAGED_BY, MANAGER, SHARD_LABEL};
use dotmac_orchestrator::cluster::{Cluster, Instances};
use dotmac_orchestrator::kube_cluster::{KubeCluster, RequestCounts};
use dotmac_orchestrator::reconcile::set_condition;
use dotmac_orchestrator::resource::{
    ChildRef, ConditionType, InstanceTier, Phase, TenantInstance, TenantInstanceSpec,
    TenantInstanceStatus,
};
use dotmac_orchestrator::secrets::openbao::{OpenBao, OpenBaoSettings};
use dotmac_orchestrator::secrets::{SecretValue, SecretVault, TenantSecrets};
use dotmac_orchestrator::{controller, testkit, Settings};
use dotmac_schema::{SharedClock, SystemClock, TenantId};
use futures::{StreamExt, TryStreamExt};
use hdrhistogram::Histogram;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use tokio::sync::oneshot;

#[derive(Parser)]
struct Args {
    /// Tenants onboarded by the operator, and as many by the baseline loop.
    #[arg(long, default_value_t = 500)]
    tenants: usize,
    /// Suspended instances added afterwards, for the RSS figure.
    #[arg(long, default_value_t = 1000)]
    idle_instances: usize,
    /// The controller's concurrent reconciles, and the baseline's (and the
    /// puts') concurrent tenants.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Bound of each wait (onboarding, idle instances), in seconds.
    #[arg(long, default_value_t = 1800)]
    timeout_secs: u64,
    /// Bound of the final wait for every instance and namespace to be gone.
    #[arg(long, default_value_t = 1800)]
    cleanup_timeout_secs: u64,
    #[arg(
        long,
        env = "DOTMAC_VAULT_ADDR",
        default_value = "http://127.0.0.1:8200"
    )]
    vault_addr: String,
    #[arg(
        long,
        env = "DOTMAC_VAULT_TOKEN",
        default_value = "root",
        hide_env_values = true
    )]
    vault_token: String,
}

/// How often the bench lists the shard while waiting for onboarding.
const POLL: Duration = Duration::from_millis(200);

/// The controller task; its error is printed when the bench stops it.
type ControllerTask = tokio::task::JoinHandle<Result<(), dotmac_orchestrator::Error>>;

/// Everything the phases share.
struct Env {
    args: Args,
    /// The bench's own client (puts, polls, the harness kubelet, cleanup):
    /// its requests are counted apart, in neither side's figures.
    bench: Client,
    /// The controller's client's counts.
    op_counts: Arc<RequestCounts>,
    /// The baseline loop's client's counts.
    base_counts: Arc<RequestCounts>,
    /// Declares the operator's instances (bench client, operator shard).
    declare: KubeCluster,
    /// Declares the baseline's instances (bench client, a shard no
    /// controller watches).
    declare_base: KubeCluster,
    /// The baseline loop's applies and status writes (its own client).
    base: KubeCluster,
    /// The baseline's secret store: the same OpenBao, a handle of its own so
    /// its cache starts as cold as the controller's.
    base_vault: OpenBao,
    settings: Settings,
    shard_selector: String,
    base_selector: String,
    op_specs: Vec<TenantInstanceSpec>,
    idle_specs: Vec<TenantInstanceSpec>,
    base_specs: Vec<TenantInstanceSpec>,
}

struct Onboarding {
    applied: Duration,
    ready: Duration,
    p50_ms: u64,
    p99_ms: u64,
    max_ms: u64,
    /// The controller's requests from the first put to all Ready.
    writes: u64,
    reads: u64,
    /// Its requests before the first put (CRD install, initial lists).
    startup: u64,
    /// Σ over tenants of (children + 1 status write).
    minimum: u64,
    children: usize,
    /// The controller's writes by resource, at all Ready.
    by_resource: std::collections::BTreeMap<String, u64>,
}

struct Baseline {
    wall: Duration,
    requests: u64,
}

struct Idle {
    total: usize,
    reconciled: Duration,
    rss_mib: f64,
    peak_mib: f64,
    deployments: usize,
}

struct Cleanup {
    instances: usize,
    instances_gone: Option<Duration>,
    instances_left: usize,
    controller_stopped: bool,
    namespaces: usize,
    namespaces_gone: Option<Duration>,
    namespaces_left: usize,
}

fn openbao(args: &Args) -> anyhow::Result<OpenBao> {
    Ok(OpenBao::new(OpenBaoSettings {
        address: args.vault_addr.clone(),
        token: SecretValue::new(args.vault_token.clone()),
        mount: "secret".into(),
        max_versions: 5,
        scope: Default::default(),
    })?)
}

/// A tenant's instance as the control plane declares it. Tiers cycle as in
/// the integration test; every tenant has a domain, so an Ingress is among
/// its children as it is for a real tenant.
fn spec(tenant: &str, i: usize, suspended: bool) -> TenantInstanceSpec {
    let tiers = [
        InstanceTier::Micro,
        InstanceTier::Small,
        InstanceTier::Large,
    ];
    TenantInstanceSpec {
        tenant_id: tenant.to_owned(),
        tier: tiers[i % tiers.len()],
        version: "1.0.0".into(),
        image: "registry.example/isp-framework".into(),
        // The id's last 12 hex digits are random bits of its UUID v7.
        domain: Some(format!(
            "{}.bench.isp.example",
            &tenant[tenant.len() - 12..]
        )),
        suspended,
        deletion_protection: true,
        secrets_generation: 0,
        abandon_cleanup: false,
    }
}

fn specs(n: usize, suspended: bool) -> Vec<TenantInstanceSpec> {
    (0..n)
        .map(|i| spec(&TenantId::new().to_string(), i, suspended))
        .collect()
}

/// A shard label value of this run's own, as the integration test makes one.
fn fresh_shard(prefix: &str) -> String {
    format!("{prefix}{}", &TenantId::new().as_str()[20..])
}

/// Runs `f` over `items`, `limit` at a time, stopping at the first error.
async fn for_each_limited<T, F, Fut>(items: Vec<T>, limit: usize, f: F) -> anyhow::Result<()>
where
    F: FnMut(T) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    futures::stream::iter(items)
        .map(f)
        .buffer_unordered(limit.max(1))
        .try_collect::<Vec<()>>()
        .await?;
    Ok(())
}

fn running(controller: &ControllerTask) -> anyhow::Result<()> {
    if controller.is_finished() {
        bail!("the controller stopped (its error is printed below)");
    }
    Ok(())
}

/// Phases of a list of instances, and one not Ready with its reason: what a
/// timeout says, so a stalled run shows where it stalled.
fn summary(items: &[TenantInstance]) -> String {
    let mut phases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut example = None;
    for inst in items {
        match &inst.status {
            None => *phases.entry("no status").or_default() += 1,
            Some(s) => {
                *phases.entry(s.phase.as_str()).or_default() += 1;
                if example.is_none() && !matches!(s.phase, Phase::Ready | Phase::Suspended) {
                    example = s
                        .condition(ConditionType::Ready)
                        .map(|c| format!("{}: {} ({})", inst.name_any(), c.reason, c.message));
                }
            }
        }
    }
    format!(
        "{} instances {phases:?}; e.g. {}",
        items.len(),
        example.unwrap_or_else(|| "-".into())
    )
}

/// Waits until both of the controller's watchers (instances, Deployments)
/// have listed and started watching, and returns its requests so far: what
/// it costs to start, not to onboard, so it is reported apart.
async fn controller_started(env: &Env, controller: &ControllerTask) -> anyhow::Result<u64> {
    let since = Instant::now();
    // The watcher lists before it watches: a second watch request means both
    // initial lists are done.
    while env.op_counts.watches.load(Ordering::Relaxed) < 2 {
        running(controller)?;
        if since.elapsed() > Duration::from_secs(60) {
            bail!("the controller did not start watching within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(env.op_counts.requests())
}

/// Phases 1 and 2.
async fn onboard(
    env: &Env,
    controller: &ControllerTask,
    startup: u64,
) -> anyhow::Result<Onboarding> {
    let n = env.op_specs.len();
    // The number of children does not depend on the secrets' values.
    let dummy = TenantSecrets {
        version: 1,
        values: BTreeMap::new(),
    };
    let mut minimum = 0;
    for s in &env.op_specs {
        minimum += builders::children(s, &s.version, &dummy, &env.settings, None)?.len() as u64 + 1;
    }
    let children = builders::children(
        &env.op_specs[0],
        &env.op_specs[0].version,
        &dummy,
        &env.settings,
        None,
    )?
    .len();
    let writes_before = env.op_counts.writes.load(Ordering::Relaxed);
    let reads_before = env.op_counts.reads.load(Ordering::Relaxed);

    // Wall-clock times, compared with the controller's own `readySince`
    // (same machine, same clock): the latency does not depend on the poll.
    let put_started: Arc<Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>> = Arc::default();
    let started = Instant::now();
    // The puts run on their own task so the polls see instances turn Ready
    // while later ones are still being declared.
    let mut puts = Some(tokio::spawn({
        let declare = env.declare.clone();
        let specs = env.op_specs.clone();
        let put_started = put_started.clone();
        let limit = env.args.concurrency;
        async move {
            for_each_limited(specs, limit, move |spec| {
                let declare = declare.clone();
                let put_started = put_started.clone();
                async move {
                    let name = builders::instance_name(&spec.tenant_id)?;
                    put_started
                        .lock()
                        .expect("put times")
                        .insert(name, chrono::Utc::now());
                    declare.put(&spec).await?;
                    anyhow::Ok(())
                }
            })
            .await
        }
    }));

    let api: Api<TenantInstance> = Api::all(env.bench.clone());
    // resourceVersion=0: served from the API server's watch cache (at most
    // milliseconds behind), so polling 500 instances five times a second
    // does not put a quorum read of etcd beside the work measured.
    let lp = ListParams::default().labels(&env.shard_selector).at("0");
    let deadline = started + Duration::from_secs(env.args.timeout_secs);
    let mut next_progress = started + Duration::from_secs(10);
    let mut applied: HashSet<String> = HashSet::new();
    let mut ready: HashSet<String> = HashSet::new();
    // Bounded (1 ms to an hour): `saturating_record` does not grow an
    // auto-resizing histogram, it clamps to its initial top of 2.
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    let mut all_applied = None;
    let all_ready = loop {
        tokio::time::sleep(POLL).await;
        running(controller)?;
        // A failed put surfaces now, not as a timeout.
        if let Some(p) = puts.take_if(|p| p.is_finished()) {
            p.await??;
        }
        let list = api.list(&lp).await?;
        // When the answer arrived: an instance is Ready no later than this.
        let seen = Instant::now();
        {
            let put_started = put_started.lock().expect("put times");
            for inst in &list.items {
                let Some(st) = &inst.status else { continue };
                let name = inst.name_any();
                if st.applied_digest.is_some() {
                    applied.insert(name.clone());
                }
                if st.phase == Phase::Ready && !ready.contains(&name) {
                    let ready_at = st
                        .ready_since
                        .as_deref()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
                    if let (Some(t0), Some(at)) = (put_started.get(&name), ready_at) {
                        let ms = (at.with_timezone(&chrono::Utc) - *t0).num_milliseconds();
                        latency.saturating_record(u64::try_from(ms).unwrap_or(0));
                    }
                    ready.insert(name);
                }
            }
        }
        if all_applied.is_none() && applied.len() >= n {
            all_applied = Some(seen.duration_since(started));
        }
        if ready.len() >= n {
            break seen.duration_since(started);
        }
        if seen >= next_progress {
            println!(
                "  {:>5.0} s: {} declared, {} applied, {} Ready",
                seen.duration_since(started).as_secs_f64(),
                put_started.lock().expect("put times").len(),
                applied.len(),
                ready.len()
            );
            next_progress = seen + Duration::from_secs(10);
        }
        if seen >= deadline {
            bail!(
                "onboarding: after {} s, {} of {n} applied and {} Ready: {}",
                env.args.timeout_secs,
                applied.len(),
                ready.len(),
                summary(&list.items)
            );
        }
    };
    // Read at once, before anything else the run does adds to them.
    let writes = env.op_counts.writes.load(Ordering::Relaxed) - writes_before;
    let reads = env.op_counts.reads.load(Ordering::Relaxed) - reads_before;
    let by_resource = env
        .op_counts
        .writes_by_resource
        .lock()
        .expect("counts")
        .clone();
    if let Some(p) = puts {
        p.await??;
    }
    Ok(Onboarding {
        applied: all_applied.unwrap_or(all_ready),
        ready: all_ready,
        p50_ms: latency.value_at_quantile(0.5),
        p99_ms: latency.value_at_quantile(0.99),
        max_ms: latency.max(),
        writes,
        reads,
        startup,
        minimum,
        children,
        by_resource,
    })
}

/// The status a controller writes after applying every child of a new
/// instance whose workload is not available yet: what the baseline writes,
/// so both sides write the same bytes.
fn applied_status(
    spec: &TenantInstanceSpec,
    kids: &[Child],
    secrets_version: u64,
) -> anyhow::Result<TenantInstanceStatus> {
    let now = chrono::Utc::now();
    let refs: BTreeSet<ChildRef> = kids.iter().map(Child::reference).collect();
    let mut st = TenantInstanceStatus {
        // A new object's generation.
        observed_generation: 1,
        phase: Phase::Provisioning,
        namespace: Some(builders::namespace_for(&spec.tenant_id)?),
        children: refs.into_iter().collect(),
        applied_digest: Some(builders::digest(kids, secrets_version)),
        applied_at: Some(now.to_rfc3339()),
        secrets_version,
        ..TenantInstanceStatus::default()
    };
    for (type_, ok, reason, message) in [
        (
            ConditionType::QuotaApplied,
            true,
            "Applied",
            format!("tier {:?} quota and limits applied", spec.tier),
        ),
        (
            ConditionType::NetworkIsolated,
            true,
            "Applied",
            "default deny with the instance's allows".to_owned(),
        ),
        (
            ConditionType::SecretsSynced,
            true,
            "Delivered",
            format!("secrets version {secrets_version} delivered"),
        ),
        (
            ConditionType::WorkloadAvailable,
            false,
            "Progressing",
            "0 of 1 replicas available".to_owned(),
        ),
        (
            ConditionType::Ready,
            false,
            "WorkloadAvailable",
            "waiting for the workload to become available".to_owned(),
        ),
    ] {
        set_condition(&mut st, type_, ok, reason, message, 1, now);
    }
    Ok(st)
}

/// Phase 3: the same work without a controller. The put is timed on both
/// sides (the operator's clock also starts before its first put), and the
/// secrets come from the same OpenBao through the same calls.
async fn baseline(env: &Env) -> anyhow::Result<Baseline> {
    let before = env.base_counts.requests();
    let (declare, base, vault, settings) =
        (&env.declare_base, &env.base, &env.base_vault, &env.settings);
    let started = Instant::now();
    for_each_limited(
        env.base_specs.clone(),
        env.args.concurrency,
        move |spec| async move {
            declare.put(&spec).await?;
            let secrets = vault
                .ensure(&spec.tenant_id, spec.secrets_generation)
                .await?;
            // No owner reference: it needs the instance's uid, which the put
            // does not return, and a get would be a request the operator
            // does not make.
            let kids = builders::children(&spec, &spec.version, &secrets, settings, None)?;
            for child in &kids {
                base.apply(child).await?;
            }
            let status = applied_status(&spec, &kids, secrets.version)?;
            base.write_status(&builders::instance_name(&spec.tenant_id)?, &status)
                .await?;
            anyhow::Ok(())
        },
    )
    .await?;
    Ok(Baseline {
        wall: started.elapsed(),
        requests: env.base_counts.requests() - before,
    })
}

/// Deletes whatever the baseline left: each namespace directly, the
/// tenant's secrets, then the instance (its finalizer removed first: no
/// controller watches the baseline's shard). Idempotent; returns how many
/// instances it found.
async fn clean_baseline(env: &Env) -> anyhow::Result<usize> {
    // A quorum read, not the watch cache: the finalizer's removal is a
    // compare-and-set on the resource version listed.
    let present = Api::<TenantInstance>::all(env.bench.clone())
        .list(&ListParams::default().labels(&env.base_selector))
        .await?
        .items;
    let found = present.len();
    let (declare, vault) = (&env.declare_base, &env.base_vault);
    for_each_limited(present, env.args.concurrency, move |inst| async move {
        let tenant = inst.spec.tenant_id.clone();
        declare
            .delete_child(&ChildRef {
                kind: ChildKind::Namespace.as_str().to_owned(),
                namespace: None,
                name: builders::namespace_for(&tenant)?,
            })
            .await?;
        vault.revoke(&tenant).await?;
        declare.set_finalizer(&inst, false).await?;
        declare.request_deletion(&tenant).await?;
        anyhow::Ok(())
    })
    .await?;
    Ok(found)
}

/// Phase 4.
async fn idle(env: &Env, controller: &ControllerTask) -> anyhow::Result<Idle> {
    let started = Instant::now();
    let declare = &env.declare;
    for_each_limited(
        env.idle_specs.clone(),
        env.args.concurrency,
        move |spec| async move {
            declare.put(&spec).await?;
            anyhow::Ok(())
        },
    )
    .await?;
    let total = env.op_specs.len() + env.idle_specs.len();
    let api: Api<TenantInstance> = Api::all(env.bench.clone());
    let lp = ListParams::default().labels(&env.shard_selector).at("0");
    let deadline = started + Duration::from_secs(env.args.timeout_secs);
    loop {
        // Once a second: this wait is not timed closely, and a list of 1,500
        // instances is not free for the API server or for this process.
        tokio::time::sleep(Duration::from_secs(1)).await;
        running(controller)?;
        let list = api.list(&lp).await?;
        let done = list
            .items
            .iter()
            .filter(|i| {
                i.status
                    .as_ref()
                    .is_some_and(|s| s.applied_digest.is_some())
            })
            .count();
        if done >= total {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "idle instances: after {} s, {done} of {total} have a status: {}",
                env.args.timeout_secs,
                summary(&list.items)
            );
        }
    }
    let reconciled = started.elapsed();
    // Reconciles still in flight (status writes of the last ones) finish,
    // and the last list's buffers are gone, before the reading.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (peak, rss) = rss_mib(std::process::id());
    // What the controller's Deployment cache holds: every managed Deployment
    // in the cluster, not only this shard's.
    let deployments = Api::<Deployment>::all(env.bench.clone())
        .list_metadata(&ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER}")))
        .await?
        .items
        .len();
    Ok(Idle {
        total,
        reconciled,
        rss_mib: rss,
        peak_mib: peak,
        deployments,
    })
}

/// Phase 5: every instance left in the shard deleted through its finalizer
/// (deletion protection turned off first, as an operator would), whatever
/// the baseline left deleted directly; then bounded waits until both are gone.
async fn cleanup(env: &Env, controller: &ControllerTask) -> anyhow::Result<Cleanup> {
    let started = Instant::now();
    let instances: Api<TenantInstance> = Api::all(env.bench.clone());
    let shard_lp = ListParams::default().labels(&env.shard_selector);
    // What is in the cluster, not what the run meant to declare: a run that
    // failed half-way cleans up exactly what it made.
    let present = instances.list(&shard_lp).await?.items;
    let total = present.len();
    let declare = &env.declare;
    for_each_limited(present, env.args.concurrency, move |inst| async move {
        let spec = TenantInstanceSpec {
            deletion_protection: false,
            ..inst.spec
        };
        declare.put(&spec).await?;
        declare.request_deletion(&spec.tenant_id).await?;
        anyhow::Ok(())
    })
    .await?;
    clean_baseline(env).await?;

    let base_namespaces: HashSet<String> = env
        .base_specs
        .iter()
        .map(|s| builders::namespace_for(&s.tenant_id))
        .collect::<Result<_, _>>()?;
    let namespaces: Api<Namespace> = Api::all(env.bench.clone());
    let managed = ListParams::default().labels(&format!("{MANAGED_BY}={MANAGER}"));
    let deadline = started + Duration::from_secs(env.args.cleanup_timeout_secs);
    let mut out = Cleanup {
        instances: total,
        instances_gone: None,
        instances_left: total,
        controller_stopped: false,
        namespaces: base_namespaces.len(),
        namespaces_gone: None,
        namespaces_left: base_namespaces.len(),
    };
    loop {
        if out.instances_gone.is_none() && !out.controller_stopped {
            out.instances_left = instances.list_metadata(&shard_lp).await?.items.len();
            if out.instances_left == 0 {
                out.instances_gone = Some(started.elapsed());
            } else if controller.is_finished() {
                // Nothing will release their finalizers: stop waiting.
                out.controller_stopped = true;
            }
        }
        if out.namespaces_gone.is_none() {
            out.namespaces_left = namespaces
                .list_metadata(&managed)
                .await?
                .items
                .iter()
                .filter(|ns| {
                    ns.metadata
                        .name
                        .as_ref()
                        .is_some_and(|name| base_namespaces.contains(name))
                })
                .count();
            if out.namespaces_left == 0 {
                out.namespaces_gone = Some(started.elapsed());
            }
        }
        let instances_done = out.instances_gone.is_some() || out.controller_stopped;
        if (instances_done && out.namespaces_gone.is_some()) || Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(out)
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "FAIL"
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn report(env: &Env, on: &Onboarding, base: &Baseline, idle: &Idle) {
    let n = env.op_specs.len() as f64;
    let throughput = secs(base.wall) / secs(on.applied);
    let requests = (on.writes + on.reads) as f64;
    let ratio = requests / on.minimum as f64;
    println!(
        "\nbench-orchestrator: {} tenants ({} children each), concurrency {}; Kubernetes 1.20 API server with kube-controller-manager and the harness kubelet; OpenBao at {}",
        env.op_specs.len(),
        on.children,
        env.args.concurrency,
        env.args.vault_addr
    );
    println!(
        "  operator, first put to all children applied:  {:>8.1} s",
        secs(on.applied)
    );
    println!(
        "  baseline raw loop, the same work:              {:>8.1} s   (per tenant: put, OpenBao ensure, {} server-side applies, 1 status write; {} at a time; no controller)",
        secs(base.wall),
        on.children,
        env.args.concurrency
    );
    println!(
        "  throughput operator / baseline:                {:>8.2}     target >= 0.50  {}",
        throughput,
        verdict(throughput >= 0.5)
    );
    println!(
        "  operator, first put to all Ready:              {:>8.1} s   (includes kube-controller-manager and the harness kubelet; no target)",
        secs(on.ready)
    );
    println!(
        "  onboarding latency, put to Ready:              p50 {:.2} s, p99 {:.2} s, max {:.2} s   (from each put to the controller's readySince; progress polled every {} ms)",
        on.p50_ms as f64 / 1000.0,
        on.p99_ms as f64 / 1000.0,
        on.max_ms as f64 / 1000.0,
        POLL.as_millis()
    );
    println!(
        "  operator requests per tenant:                  {:>8.2}     ({} writes, {} one-shot reads; watches and {} start-up requests not counted)",
        requests / n,
        on.writes,
        on.reads,
        on.startup
    );
    let per_resource: Vec<String> = on
        .by_resource
        .iter()
        .map(|(k, v)| format!("{k} {:.2}", *v as f64 / n))
        .collect();
    println!(
        "    writes per tenant by resource: {}",
        per_resource.join(", ")
    );
    println!(
        "  least possible per tenant:                     {:>8.2}     (one server-side apply per child + 1 status write)",
        on.minimum as f64 / n
    );
    println!(
        "  requests / least possible:                     {:>8.2}     target <= 1.20  {}",
        ratio,
        verdict(ratio <= 1.2)
    );
    println!(
        "  baseline requests per tenant:                  {:>8.2}     (its put is on the bench's client, not counted)",
        base.requests as f64 / env.base_specs.len() as f64
    );
    println!(
        "  {} idle instances reconciled in:             {:>8.1} s",
        env.idle_specs.len(),
        secs(idle.reconciled)
    );
    println!(
        "  process RSS with {} instances:               {:>8.1} MiB target < 200 MiB  {}   (peak {:.1} MiB; the whole process: the controller with its caches of {} instances and of {} managed Deployments cluster-wide, the harness kubelet, and the bench's own clients)",
        idle.total,
        idle.rss_mib,
        verdict(idle.rss_mib < 200.0),
        idle.peak_mib,
        idle.total,
        idle.deployments
    );
}

fn report_cleanup(c: &Cleanup, bound: u64) {
    match c.instances_gone {
        Some(d) => println!(
            "  cleanup: {} instances gone through their finalizers in {:.1} s",
            c.instances,
            secs(d)
        ),
        None if c.controller_stopped => println!(
            "  cleanup: the controller stopped; {} of {} instances left (their finalizers hold them)",
            c.instances_left, c.instances
        ),
        None => println!(
            "  cleanup: {} of {} instances still present after {bound} s",
            c.instances_left, c.instances
        ),
    }
    match c.namespaces_gone {
        Some(d) => println!(
            "  cleanup: {} baseline namespaces gone in {:.1} s",
            c.namespaces,
            secs(d)
        ),
        None => println!(
            "  cleanup: {} of {} baseline namespaces still present after {bound} s",
            c.namespaces_left, c.namespaces
        ),
    }
}

/// Phases 1 to 4, each printed as it ends.
async fn measure(
    env: &Env,
    controller: &ControllerTask,
) -> anyhow::Result<(Onboarding, Baseline, Idle)> {
    let startup = controller_started(env, controller).await?;
    println!(
        "onboarding {} tenants through the controller (shard {})",
        env.op_specs.len(),
        env.settings.shard.as_deref().unwrap_or_default()
    );
    let on = onboard(env, controller, startup).await?;
    println!(
        "  all applied after {:.1} s, all Ready after {:.1} s",
        secs(on.applied),
        secs(on.ready)
    );
    println!(
        "baseline: {} tenants, server-side applies and status writes without a controller",
        env.base_specs.len()
    );
    let base = baseline(env).await?;
    println!("  done in {:.1} s", secs(base.wall));
    // Deleted now, not at the end: their Deployments would otherwise sit in
    // the controller's Deployment cache during the RSS reading.
    let removed = clean_baseline(env).await?;
    println!("  its {removed} instances deleted, their namespaces terminating");
    println!(
        "adding {} suspended instances for the RSS reading",
        env.idle_specs.len()
    );
    let idle = idle(env, controller).await?;
    println!(
        "  {} instances with a status after {:.1} s",
        idle.total,
        secs(idle.reconciled)
    );
    Ok((on, base, idle))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The controller's warnings (failed reconciles and their retries) are
    // what explains a request count above the least possible.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DOTMAC_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if args.tenants == 0 || args.concurrency == 0 {
        bail!("--tenants and --concurrency must be positive");
    }
    let concurrency = u16::try_from(args.concurrency).context("--concurrency: at most 65535")?;
    // Three clients, each counted on its own: only the controller's
    // requests are in the operator's figure, only the loop's in the baseline's.
    let bench = testkit::connect(Arc::new(RequestCounts::default()))
        .await
        .context("the API server of deploy/local/kubernetes.sh")?;
    let op_counts = Arc::new(RequestCounts::default());
    let op_client = testkit::connect(op_counts.clone()).await?;
    let base_counts = Arc::new(RequestCounts::default());
    let base_client = testkit::connect(base_counts.clone()).await?;
    let kubelet = testkit::Kubelet::start(bench.clone()).await?;

    let shard = fresh_shard("bench");
    let base_shard = fresh_shard("base");
    let settings = Settings {
        concurrency,
        shard: Some(shard.clone()),
        ..Settings::default()
    };
    let env = Env {
        bench: bench.clone(),
        op_counts,
        base_counts,
        declare: KubeCluster::new(bench.clone(), None).with_shard(Some(shard.clone())),
        declare_base: KubeCluster::new(bench.clone(), None).with_shard(Some(base_shard.clone())),
        base: KubeCluster::new(base_client, None),
        base_vault: openbao(&args)?,
        settings,
        shard_selector: format!("{SHARD_LABEL}={shard}"),
        base_selector: format!("{SHARD_LABEL}={base_shard}"),
        op_specs: specs(args.tenants, false),
        idle_specs: specs(args.idle_instances, true),
        base_specs: specs(args.tenants, false),
        args,
    };

    let (stop, stopped) = oneshot::channel::<()>();
    let vault: Arc<dyn SecretVault> = Arc::new(openbao(&env.args)?);
    let clock: SharedClock = Arc::new(SystemClock);
    let controller: ControllerTask = tokio::spawn(controller::run(
        op_client,
        vault,
        env.settings.clone(),
        clock,
        async move {
            let _ = stopped.await;
        },
    ));

    let measured = measure(&env, &controller).await;
    match &measured {
        Ok((on, base, idle)) => report(&env, on, base, idle),
        Err(e) => eprintln!("the run failed: {e:#}; cleaning up what it made"),
    }
    println!(
        "cleanup (bounded by {} s): instances through their finalizers, baseline namespaces directly",
        env.args.cleanup_timeout_secs
    );
    let cleaned = cleanup(&env, &controller).await;
    match &cleaned {
        Ok(c) => report_cleanup(c, env.args.cleanup_timeout_secs),
        Err(e) => eprintln!("cleanup failed: {e:#}"),
    }
    let _ = stop.send(());
    match tokio::time::timeout(Duration::from_secs(60), controller).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => eprintln!("the controller failed: {e}"),
        Ok(Err(e)) => eprintln!("the controller task failed: {e}"),
        Err(_) => eprintln!("the controller did not stop within 60 s"),
    }
    println!(
        "harness kubelet readied {} pods",
        kubelet.readied.load(Ordering::Relaxed)
    );
    drop(kubelet);
    measured?;
    cleaned?;
    Ok(())
}

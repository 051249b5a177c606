//! The aggregator (`dotmac aggregate`): a consumer-group member on the
//! events topic that folds each partition's records into batches and writes
//! them to ClickHouse exactly once.
//!
//! Exactly-once, end to end: a flush writes raw rows and
//! rollup parts under a fresh write id, then commits them with one batch row
//! per partition naming its offset range. Only then are the batch's dedupe
//! keys entered and the Kafka offsets committed. After a crash, rebalance
//! or restart, a partition's new owner reads its last committed offset and
//! dedupe keys back from ClickHouse and skips every record at or below that
//! offset, so replays count nothing twice and lose nothing; half-written
//! flushes are invisible because they have no batch row. While ClickHouse is
//! down, records stay pending up to `max_pending_records`, consumption pauses
//! there (memory is bounded by configuration, not by the backlog), and the
//! flush is retried with exponential backoff.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use dotmac_schema::SharedClock;
use futures::future::join_all;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::catalog::{Catalog, CatalogSource, METERED_STATES};
use crate::clickhouse::ClickHouseError;
use crate::dedupe_set::DedupeSet;
use crate::fold::{PartitionBatch, Record, TimeLimits};
use crate::rows::BatchRow;
use crate::store::{Claim, UsageStore};
use dotmac_ingest::kafka::{client_config, KafkaSecurity, Topics};
use dotmac_ingest::partition::owning_partition;

/// How the aggregator runs.
#[derive(Debug, Clone)]
pub struct AggregatorConfig {
    pub brokers: String,
    /// Credentials and transport security towards the brokers.
    pub security: KafkaSecurity,
    pub group_id: String,
    pub topics: Topics,
    /// Pending records are flushed at least this often.
    pub flush_interval: Duration,
    /// Records held unflushed, at most; consumption pauses at this bound.
    pub max_pending_records: usize,
    pub dedupe_horizon: TimeDelta,
    /// How often tenants and meters are reloaded.
    pub catalog_refresh: Duration,
    pub session_timeout_ms: u32,
    pub max_poll_interval_ms: u32,
    /// Longest wait for one ClickHouse write before it counts as failed.
    pub write_timeout: Duration,
    /// What decides which events are too late or too far ahead (the wall
    /// clock, except in tests that set a date).
    pub clock: SharedClock,
    /// Fault injection for tests, never configured in production: the first
    /// flush stops this long between writing its rows and committing them,
    /// as a process frozen by the OS would (the zombie of the fencing test).
    pub commit_pause: Option<Duration>,
}

impl AggregatorConfig {
    pub fn new(brokers: &str) -> AggregatorConfig {
        AggregatorConfig {
            brokers: brokers.to_owned(),
            security: KafkaSecurity::default(),
            group_id: "dotmac-aggregator".into(),
            topics: Topics::default(),
            flush_interval: Duration::from_millis(200),
            max_pending_records: 100_000,
            dedupe_horizon: TimeDelta::days(32),
            catalog_refresh: Duration::from_secs(5),
            session_timeout_ms: 6000,
            max_poll_interval_ms: 30_000,
            write_timeout: Duration::from_secs(10),
            clock: dotmac_schema::clock::system(),
            commit_pause: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    #[error("kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] ClickHouseError),
    #[error("{0}")]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error("dead-letter topic: {0}")]
    DeadLetter(String),
    #[error("moving a record to the partition that owns its key: {0}")]
    Forward(String),
    #[error("the events topic {0} has no partitions in the broker's metadata")]
    NoPartitions(String),
    #[error("drawing an epoch from {topic} (created by `dotmac migrate`): {reason}")]
    Epoch { topic: String, reason: String },
    #[error("clickhouse at {0} does not answer its ping")]
    ClickHouseDown(String),
    #[error("clickhouse write timed out after {0:?}")]
    WriteTimeout(Duration),
    #[error("the aggregator thread failed: {0}")]
    Thread(String),
}

/// Counters for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct AggregatorStats {
    pub consumed: AtomicU64,
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    /// Records skipped because a committed batch already covers them.
    pub replay_skipped: AtomicU64,
    pub flushes: AtomicU64,
    pub flush_failures: AtomicU64,
    pub pending: AtomicU64,
    pub paused: AtomicBool,
    pub dedupe_keys: AtomicU64,
    pub dedupe_bytes: AtomicU64,
    /// Records found on a partition that does not own their key, produced
    /// again to the owner.
    pub forwarded: AtomicU64,
    /// Partitions taken over whose dedupe keys were read from ClickHouse,
    /// and partitions given back to this aggregator with nothing committed
    /// since, whose keys it kept instead.
    pub dedupe_reloads: AtomicU64,
    pub dedupe_kept: AtomicU64,
    /// Times this aggregator left and joined its group again after a stall
    /// (no partition while events waited, see `watch_assignment`).
    pub consumer_rejoins: AtomicU64,
}

/// What one successful flush committed, for live updates and latency.
#[derive(Debug, Clone)]
pub struct FlushSummary {
    pub committed_at: DateTime<Utc>,
    /// (tenant, meter) pairs whose rollups changed.
    pub touched: BTreeSet<(String, String)>,
    /// Broker timestamps (µs) of the accepted events.
    pub received_at_us: Vec<i64>,
}

pub type FlushHook = Arc<dyn Fn(&FlushSummary) + Send + Sync>;

/// Runs until `shutdown` turns true, then drains: flushes what is pending,
/// commits, and leaves the group.
pub async fn run(
    config: AggregatorConfig,
    store: UsageStore,
    catalog: Arc<dyn CatalogSource>,
    stats: Arc<AggregatorStats>,
    shutdown: watch::Receiver<bool>,
    on_flush: Option<FlushHook>,
) -> Result<(), AggregatorError> {
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut aggregator =
            Aggregator::new(config, store, catalog, stats, shutdown, on_flush, handle)?;
        aggregator.run_loop()
    })
    .await
    .map_err(|e| AggregatorError::Thread(e.to_string()))?
}

/// A consumed message, owned until its flush.
fn owned_record(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    Record {
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().map(<[u8]>::to_vec),
        received_at_us: message
            .timestamp()
            .to_millis()
            .unwrap_or(0)
            .saturating_mul(1000),
    }
}

struct RebalanceContext {
    revoked: Arc<Mutex<Vec<i32>>>,
}

impl ClientContext for RebalanceContext {}

impl ConsumerContext for RebalanceContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
            revoked.extend(tpl.elements().iter().map(|e| e.partition()));
        }
    }
}

#[derive(Default)]
struct PartitionState {
    /// Read back from ClickHouse when the partition is first flushed.
    recovered: bool,
    /// This owner's claim on the partition, written on every batch row.
    epoch: u64,
    committed_last: Option<i64>,
    dedupe: DedupeSet,
    pending: Vec<Record>,
    /// Last flush's batch, emptied and reused: its tables keep their
    /// memory (bounded by `max_pending_records`) instead of being
    /// allocated, and faulted in, again on every flush.
    spare: Option<PartitionBatch>,
}

struct Aggregator {
    config: AggregatorConfig,
    store: UsageStore,
    catalog_source: Arc<dyn CatalogSource>,
    /// The catalog, when it was loaded (for its refresh), and the wall
    /// time of that load in microseconds (compared with the broker's
    /// timestamps, which are wall time too).
    catalog: Option<(Catalog, Instant, i64)>,
    stats: Arc<AggregatorStats>,
    shutdown: watch::Receiver<bool>,
    on_flush: Option<FlushHook>,
    handle: Handle,
    consumer: BaseConsumer<RebalanceContext>,
    /// Dead letters, and records moved to the partition owning their key.
    producer: FutureProducer,
    revoked: Arc<Mutex<Vec<i32>>>,
    partitions: HashMap<i32, PartitionState>,
    pending_total: usize,
    last_flush: Instant,
    backoff: Option<Duration>,
    last_prune: Instant,
    /// Next offset per partition after the last successful flush.
    flushed_offsets: HashMap<i32, i64>,
    stall: StallWatch,
    /// The events topic's partition count (which partition owns a key),
    /// read from the broker with the catalog.
    partition_count: Option<(i32, Instant)>,
    /// Dedupe state of partitions revoked from this aggregator, kept a
    /// while: a rebalance usually gives most of them back, and when nobody
    /// committed anything in between the set is still exact, so the whole
    /// horizon of keys need not be read again.
    parked: HashMap<i32, Parked>,
}

/// A revoked partition's dedupe state, and what it was exact up to.
struct Parked {
    committed_last: Option<i64>,
    dedupe: DedupeSet,
    at: Instant,
}

/// How long a revoked partition's dedupe set is kept for its return.
const PARKED_FOR: Duration = Duration::from_secs(120);

/// What [`Aggregator::watch_assignment`] has seen of a stall so far.
struct StallWatch {
    last_check: Instant,
    /// Since when this consumer has held no partition (or since the last
    /// look at the offsets).
    unassigned_since: Option<Instant>,
    /// The partitions with events waiting, and their committed offsets, at
    /// the last look.
    waiting: Option<BTreeMap<i32, Option<i64>>>,
}

impl Default for StallWatch {
    fn default() -> Self {
        StallWatch {
            last_check: Instant::now(),
            unassigned_since: None,
            waiting: None,
        }
    }
}

/// How long a consumer holds no partition, and then how long the waiting
/// offsets stay still, before it joins again: three session timeouts, the
/// longest a healthy rebalance after a member's death takes.
fn stall_after(config: &AggregatorConfig) -> Duration {
    Duration::from_millis(3 * u64::from(config.session_timeout_ms))
}

/// A consumer of the events topic in the aggregators' group, subscribed.
fn subscribed_consumer(
    config: &AggregatorConfig,
    revoked: &Arc<Mutex<Vec<i32>>>,
) -> Result<BaseConsumer<RebalanceContext>, AggregatorError> {
    let consumer: BaseConsumer<RebalanceContext> = client_config(&config.brokers, &config.security)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "max.poll.interval.ms",
            config.max_poll_interval_ms.to_string(),
        )
        // The prefetch queue is part of the memory bound.
        .set("queued.max.messages.kbytes", "16384")
        .create_with_context(RebalanceContext {
            revoked: revoked.clone(),
        })?;
    consumer.subscribe(&[&config.topics.events])?;
    Ok(consumer)
}

impl Aggregator {
    fn new(
        config: AggregatorConfig,
        store: UsageStore,
        catalog_source: Arc<dyn CatalogSource>,
        stats: Arc<AggregatorStats>,
        shutdown: watch::Receiver<bool>,
        on_flush: Option<FlushHook>,
        handle: Handle,
    ) -> Result<Aggregator, AggregatorError> {
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let consumer = subscribed_consumer(&config, &revoked)?;
        let producer: FutureProducer = client_config(&config.brokers, &config.security)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Aggregator {
            config,
            store,
            catalog_source,
            catalog: None,
            stats,
            shutdown,
            on_flush,
            handle,
            consumer,
            producer,
            revoked,
            partitions: HashMap::new(),
            pending_total: 0,
            last_flush: Instant::now(),
            backoff: None,
            last_prune: Instant::now(),
            flushed_offsets: HashMap::new(),
            stall: StallWatch::default(),
            partition_count: None,
            parked: HashMap::new(),
        })
    }

    /// The group stall seen about one chaos run in six (a member that
    /// joined after a broker restart is never given a partition while the
    /// events wait): when this consumer has held no partition for
    /// [`stall_after`], with nothing pending, and in that time no partition
    /// with events waiting has committed anything, it leaves the group and
    /// joins again with a new consumer. A consumer that has no partition
    /// because the others hold them all sees their commits move, and stays.
    fn watch_assignment(&mut self) {
        if self.stall.last_check.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.stall.last_check = Instant::now();
        let assigned = self.consumer.assignment().map_or(0, |a| a.count());
        if assigned > 0 || self.pending_total > 0 {
            self.stall = StallWatch::default();
            return;
        }
        let since = *self.stall.unassigned_since.get_or_insert_with(Instant::now);
        if since.elapsed() < stall_after(&self.config) {
            return;
        }
        let waiting = match self.waiting_offsets() {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the topic's offsets");
                return;
            }
        };
        let stuck = !waiting.is_empty() && self.stall.waiting.as_ref() == Some(&waiting);
        if !stuck {
            // Look again one period later: only offsets that did not move
            // in a whole period mean nobody consumes them.
            self.stall.waiting = Some(waiting);
            self.stall.unassigned_since = Some(Instant::now());
            return;
        }
        tracing::warn!(
            partitions_waiting = waiting.len(),
            "no partition assigned while events wait and nothing commits; joining the group again"
        );
        match subscribed_consumer(&self.config, &self.revoked) {
            Ok(consumer) => {
                // The old consumer leaves the group as it is dropped.
                self.consumer = consumer;
                self.partitions.clear();
                self.flushed_offsets.clear();
                self.stats.paused.store(false, Ordering::Relaxed);
                self.stats.consumer_rejoins.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "could not create a new consumer"),
        }
        self.stall = StallWatch::default();
    }

    /// The partitions with events past what ClickHouse has committed for
    /// them, with that committed offset.
    fn waiting_offsets(&self) -> Result<BTreeMap<i32, Option<i64>>, AggregatorError> {
        let topic = &self.config.topics.events;
        let timeout = Duration::from_secs(5);
        let metadata = self.consumer.fetch_metadata(Some(topic), timeout)?;
        let mut waiting = BTreeMap::new();
        for t in metadata.topics().iter().filter(|t| t.name() == topic) {
            for p in t.partitions() {
                let (low, high) = self.consumer.fetch_watermarks(topic, p.id(), timeout)?;
                let committed = self
                    .handle
                    .block_on(self.store.last_committed_offset(p.id()))?;
                let next = committed.map_or(low, |c| (c + 1).max(low));
                if high > next {
                    waiting.insert(p.id(), committed);
                }
            }
        }
        Ok(waiting)
    }

    fn run_loop(&mut self) -> Result<(), AggregatorError> {
        tracing::info!(topic = %self.config.topics.events, group = %self.config.group_id, "aggregator started");
        // Stops when asked, or when whoever could ask is gone (a test that
        // panicked must not leave this thread holding its runtime open).
        while !*self.shutdown.borrow() && self.shutdown.has_changed().is_ok() {
            self.apply_revocations();
            let wait = if self.pending_total == 0 { 100 } else { 5 };
            // Take everything already fetched before deciding to flush.
            let mut taken = 0;
            while taken < 50_000 {
                let timeout = if taken == 0 {
                    Duration::from_millis(wait)
                } else {
                    Duration::ZERO
                };
                match self.consumer.poll(timeout) {
                    Some(Ok(message)) => {
                        let record = owned_record(&message);
                        drop(message);
                        self.take(record);
                        taken += 1;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "consumer error");
                        break;
                    }
                    None => break,
                }
                if self.pending_total >= self.config.max_pending_records {
                    break;
                }
            }
            self.apply_revocations();
            if self.flush_due() {
                self.flush_and_account();
            }
            self.watch_assignment();
        }
        self.drain()
    }

    fn take(&mut self, record: Record) {
        self.partitions
            .entry(record.partition)
            .or_default()
            .pending
            .push(record);
        self.pending_total += 1;
        self.stats.consumed.fetch_add(1, Ordering::Relaxed);
        self.stats
            .pending
            .store(self.pending_total as u64, Ordering::Relaxed);
        if self.pending_total >= self.config.max_pending_records {
            self.pause(true);
        }
    }

    fn pause(&mut self, pause: bool) {
        if self.stats.paused.load(Ordering::Relaxed) == pause {
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        match result {
            Ok(()) => {
                self.stats.paused.store(pause, Ordering::Relaxed);
                tracing::info!(
                    pending = self.pending_total,
                    paused = pause,
                    "consumption paused/resumed"
                );
            }
            Err(e) => tracing::warn!(error = %e, "pausing or resuming the consumer"),
        }
    }

    /// Partitions taken away in a rebalance: their pending records are
    /// dropped (uncommitted, so their next owner reads them again) along
    /// with their dedupe state (the next owner reads it back).
    fn apply_revocations(&mut self) {
        let revoked: Vec<i32> =
            std::mem::take(&mut *self.revoked.lock().unwrap_or_else(|p| p.into_inner()));
        for p in revoked {
            self.flushed_offsets.remove(&p);
            if let Some(state) = self.partitions.remove(&p) {
                self.pending_total -= state.pending.len();
                tracing::info!(
                    partition = p,
                    dropped = state.pending.len(),
                    "partition revoked"
                );
                if state.recovered {
                    self.parked.insert(
                        p,
                        Parked {
                            committed_last: state.committed_last,
                            dedupe: state.dedupe,
                            at: Instant::now(),
                        },
                    );
                }
            }
        }
        self.parked.retain(|_, k| k.at.elapsed() < PARKED_FOR);
        self.stats
            .pending
            .store(self.pending_total as u64, Ordering::Relaxed);
        if self.pending_total < self.config.max_pending_records {
            // librdkafka resumes newly assigned partitions itself; resume
            // only matters for the ones paused by us.
            if self.stats.paused.load(Ordering::Relaxed) && self.backoff.is_none() {
                self.pause(false);
            }
        }
    }

    fn flush_due(&self) -> bool {
        if self.pending_total == 0 {
            return false;
        }
        let since = self.last_flush.elapsed();
        match self.backoff {
            Some(backoff) => since >= backoff,
            None => {
                since >= self.config.flush_interval
                    || self.pending_total >= self.config.max_pending_records
            }
        }
    }

    fn flush_and_account(&mut self) {
        self.last_flush = Instant::now();
        match self.flush() {
            Ok(()) => {
                self.backoff = None;
                if self.stats.paused.load(Ordering::Relaxed) {
                    self.pause(false);
                }
            }
            Err(e) => {
                self.stats.flush_failures.fetch_add(1, Ordering::Relaxed);
                let next = self.backoff.map_or(Duration::from_millis(100), |b| {
                    (b * 2).min(Duration::from_secs(5))
                });
                tracing::warn!(error = %e, retry_in = ?next, pending = self.pending_total, "flush failed; records stay pending");
                self.backoff = Some(next);
            }
        }
    }

    fn refresh_catalog(&mut self) -> Result<(), AggregatorError> {
        let stale = self
            .catalog
            .as_ref()
            .is_none_or(|(_, at, _)| at.elapsed() >= self.config.catalog_refresh);
        if !stale {
            return Ok(());
        }
        match self.load_catalog() {
            Ok(()) => Ok(()),
            // A stale catalog beats stopping; no catalog at all cannot fold.
            Err(e) if self.catalog.is_some() => {
                tracing::warn!(error = %e, "keeping the previous catalog");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    fn load_catalog(&mut self) -> Result<(), AggregatorError> {
        // Taken before the load: a tenant activated while it runs is in it
        // or arrives after this instant.
        let started_us = Utc::now().timestamp_micros();
        let c = self.handle.block_on(self.catalog_source.load())?;
        self.catalog = Some((c, Instant::now(), started_us));
        Ok(())
    }

    /// Reloads the catalog, whatever its age, when a pending record names
    /// a tenant it does not meter and reached the broker after it was
    /// loaded: that tenant may have been activated since, and a verdict on
    /// the old catalog would dead-letter, for good, usage the platform had
    /// already accepted. A failed reload fails the flush (the records stay
    /// pending and are retried), never the records. A tenant unknown to a
    /// catalog loaded after its record arrived is judged by it. (At most
    /// one reload per flush: only the platform produces to the topic, so
    /// records of tenants it does not know are rare.)
    fn reload_for_unknown_tenants(&mut self) -> Result<(), AggregatorError> {
        let Some((catalog, _, loaded_us)) = &self.catalog else {
            return Ok(());
        };
        // Broker and aggregator clocks disagree a little: records stamped
        // up to this long before the load are treated as after it.
        const CLOCK_SKEW_US: i64 = 5_000_000;
        let unknown_since_load = self
            .partitions
            .values()
            .flat_map(|s| s.pending.iter())
            .filter(|r| r.received_at_us >= loaded_us.saturating_sub(CLOCK_SKEW_US))
            .any(|r| match r.key.as_deref().map(std::str::from_utf8) {
                Some(Ok(t)) if !t.is_empty() => !catalog
                    .tenant_state(t)
                    .is_some_and(|state| METERED_STATES.contains(&state)),
                _ => false,
            });
        if unknown_since_load {
            tracing::info!("a record names a tenant the catalog does not meter; reloading it");
            self.load_catalog()?;
        }
        Ok(())
    }

    fn recover(&mut self, limits: &TimeLimits) -> Result<(), AggregatorError> {
        let horizon = limits.horizon_start().timestamp();
        let waiting: Vec<i32> = self
            .partitions
            .iter()
            .filter(|(_, s)| !s.recovered && !s.pending.is_empty())
            .map(|(p, _)| *p)
            .collect();
        for p in waiting {
            // The epoch first: claims are ordered as they are drawn, so a
            // later owner always outranks this one.
            let epoch = self.draw_epoch(p)?;
            let last = self.handle.block_on(self.store.last_committed_offset(p))?;
            let from = last.map_or(0, |l| l + 1);
            let claim = self.handle.block_on(self.store.claim(p, epoch, from))?;
            if let Claim::Superseded { epoch: by, from } = claim {
                tracing::warn!(partition = p, epoch, superseded_by = by, from, "a later owner claimed this partition; what this one writes from there is fenced");
            }
            // Back with nothing committed since it left: its keys are exact.
            let kept = self
                .parked
                .remove(&p)
                .filter(|k| k.committed_last == last)
                .map(|k| k.dedupe);
            let dedupe = match kept {
                Some(set) => {
                    self.stats.dedupe_kept.fetch_add(1, Ordering::Relaxed);
                    set
                }
                None => {
                    let mut set = DedupeSet::default();
                    for (k, t) in self
                        .handle
                        .block_on(self.store.committed_keys(p, horizon))?
                    {
                        set.insert(k, t);
                    }
                    self.stats.dedupe_reloads.fetch_add(1, Ordering::Relaxed);
                    set
                }
            };
            let rewind = self.rewind_to_committed(p, last)?;
            let state = self.partitions.entry(p).or_default();
            state.committed_last = last;
            state.epoch = epoch;
            state.dedupe = dedupe;
            state.recovered = true;
            if rewind {
                self.pending_total -= state.pending.len();
                state.pending.clear();
            }
            tracing::info!(partition = p, epoch, committed_last = ?last, rewind, dedupe_keys = state.dedupe.len(), "partition recovered from clickhouse");
        }
        Ok(())
    }

    /// An epoch for a claim of `partition`: the offset of a record this
    /// aggregator produces to the epochs topic, plus one (epoch 0 is the
    /// batches from before fencing). The broker orders the records, so a
    /// claim drawn later has a higher epoch, whoever draws it.
    fn draw_epoch(&self, partition: i32) -> Result<u64, AggregatorError> {
        let topic = self.config.topics.epochs();
        let payload = format!(
            "{{\"partition\":{partition},\"group\":{:?}}}",
            self.config.group_id
        );
        let record: FutureRecord<'_, str, str> = FutureRecord::to(&topic)
            .partition(0)
            .key(self.config.group_id.as_str())
            .payload(payload.as_str());
        let delivery = self
            .handle
            .block_on(
                self.producer
                    .send(record, Timeout::After(Duration::from_secs(10))),
            )
            .map_err(|(e, _)| AggregatorError::Epoch {
                topic: topic.clone(),
                reason: e.to_string(),
            })?;
        u64::try_from(delivery.offset)
            .map(|o| o + 1)
            .map_err(|_| AggregatorError::Epoch {
                topic,
                reason: format!("the broker answered offset {}", delivery.offset),
            })
    }

    /// Moves the consumer of `partition` back to just after `last` (the
    /// last offset a counted batch covers) when its pending records start
    /// beyond it: the group's committed offset ran ahead of what counts (a
    /// fenced owner committed it), and the batch rows are the truth.
    /// Returns whether it moved; the pending records are then read again.
    fn rewind_to_committed(
        &self,
        partition: i32,
        last: Option<i64>,
    ) -> Result<bool, AggregatorError> {
        let (Some(last), Some(first)) = (
            last,
            self.partitions
                .get(&partition)
                .and_then(|s| s.pending.first())
                .map(|r| r.offset),
        ) else {
            return Ok(false);
        };
        if first <= last + 1 {
            return Ok(false);
        }
        let topic = &self.config.topics.events;
        let (low, _) = self
            .consumer
            .fetch_watermarks(topic, partition, Duration::from_secs(5))?;
        // Records before the log's start are gone; nothing to read again.
        if last + 1 < low {
            return Ok(false);
        }
        tracing::warn!(
            partition,
            from = last + 1,
            was = first,
            "the group's offset is past what counts; reading again from there"
        );
        self.consumer.seek(
            topic,
            partition,
            Offset::Offset(last + 1),
            Duration::from_secs(5),
        )?;
        Ok(true)
    }

    fn flush(&mut self) -> Result<(), AggregatorError> {
        // After a failure, a cheap ping first: folding and serializing a
        // whole flush only to have it refused would cost memory and CPU for
        // every retry of an outage.
        if self.backoff.is_some() && !self.handle.block_on(self.store.clickhouse().ping()) {
            return Err(AggregatorError::ClickHouseDown(
                self.store.clickhouse().url().to_owned(),
            ));
        }
        let limits = TimeLimits::new(self.config.clock.now(), self.config.dedupe_horizon);
        self.refresh_catalog()?;
        self.reload_for_unknown_tenants()?;
        self.recover(&limits)?;
        let partitions = self.partition_count()?;
        tracing::debug!(
            partitions,
            "flush: catalog, recovery and partition count ready"
        );
        let Some((catalog, _, _)) = &self.catalog else {
            return Ok(());
        };

        let write_id = uuid::Uuid::now_v7().simple().to_string();
        let mut batches = Vec::new();
        let mut skipped = 0u64;
        let mut commits: Vec<(i32, i64)> = Vec::new();
        for (p, state) in self.partitions.iter_mut() {
            let Some(last_pending) = state.pending.last().map(|r| r.offset) else {
                continue;
            };
            commits.push((*p, last_pending + 1));
            let mut batch = match state.spare.take() {
                Some(mut spare) => {
                    spare.reset(*p);
                    spare.raw.reserve(state.pending.len());
                    spare
                }
                None => PartitionBatch::with_capacity(*p, state.pending.len()),
            };
            for record in &state.pending {
                if state.committed_last.is_some_and(|c| record.offset <= c) {
                    skipped += 1;
                    continue;
                }
                if let Some(key) = record.key.as_deref().filter(|k| !k.is_empty()) {
                    let owner = owning_partition(key, partitions);
                    if owner != *p {
                        batch.forward(record, key, owner);
                        continue;
                    }
                }
                batch.add(record, catalog, &state.dedupe, &limits);
            }
            if batch.events > 0 {
                batches.push(batch);
            }
        }

        self.send_dead_letters(&batches)?;
        self.send_forwards(&batches)?;
        tracing::debug!("flush: dead letters and forwards acknowledged");
        let written_at = Utc::now();
        let mut raw = Vec::new();
        let mut parts = Vec::new();
        let mut batch_rows = Vec::new();
        let mut summary = FlushSummary {
            committed_at: written_at,
            touched: BTreeSet::new(),
            received_at_us: Vec::new(),
        };
        let shared_write_id: std::sync::Arc<str> = std::sync::Arc::from(write_id.as_str());
        for b in &mut batches {
            // Moved, not copied: a failed write refolds the pending records.
            for mut row in std::mem::take(&mut b.raw) {
                row.write_id = shared_write_id.clone();
                summary.received_at_us.push(row.received_at_us);
                raw.push(row);
            }
            parts.extend(b.part_rows(&write_id));
            summary.touched.extend(
                b.rollups
                    .keys()
                    .map(|k| (k.tenant.clone(), k.meter.clone())),
            );
            batch_rows.push(BatchRow {
                partition: b.partition,
                first_offset: b.first_offset,
                last_offset: b.last_offset,
                write_id: write_id.clone(),
                written_at_us: written_at.timestamp_micros(),
                events: b.events,
                accepted: b.accepted,
                duplicates: b.duplicates,
                dead_lettered: b.dead_lettered(),
                epoch: self.partitions.get(&b.partition).map_or(0, |s| s.epoch),
            });
        }
        let timeout = self.config.write_timeout;
        let write = self.store.write_rows(&raw, &parts);
        self.handle
            .block_on(async { tokio::time::timeout(timeout, write).await })
            .map_err(|_| AggregatorError::WriteTimeout(timeout))??;
        if let Some(pause) = self.config.commit_pause.take() {
            tracing::warn!(
                ?pause,
                "fault injection: pausing between the write and its commit"
            );
            std::thread::sleep(pause);
        }
        let commit = self.store.commit_batches(&batch_rows);
        self.handle
            .block_on(async { tokio::time::timeout(timeout, commit).await })
            .map_err(|_| AggregatorError::WriteTimeout(timeout))??;

        // Durable: now the keys count as seen and the offsets may advance.
        summary.committed_at = self.config.clock.now();
        for b in &batches {
            let state = self.partitions.entry(b.partition).or_default();
            for (k, t) in &b.new_keys {
                state.dedupe.insert(*k, *t);
            }
            state.committed_last = Some(b.last_offset);
            self.stats
                .accepted
                .fetch_add(u64::from(b.accepted), Ordering::Relaxed);
            self.stats
                .duplicates
                .fetch_add(u64::from(b.duplicates), Ordering::Relaxed);
            self.stats
                .dead_lettered
                .fetch_add(u64::from(b.dead_lettered()), Ordering::Relaxed);
            self.stats
                .forwarded
                .fetch_add(u64::from(b.forwarded()), Ordering::Relaxed);
        }
        for state in self.partitions.values_mut() {
            state.pending.clear();
        }
        self.pending_total = 0;
        self.stats.pending.store(0, Ordering::Relaxed);
        self.stats
            .replay_skipped
            .fetch_add(skipped, Ordering::Relaxed);
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.flushed_offsets.extend(commits.iter().copied());
        self.commit(&commits, CommitMode::Async);
        self.prune_dedupe(&limits);
        if let Some(hook) = &self.on_flush {
            if !batches.is_empty() {
                hook(&summary);
            }
        }
        for b in batches {
            if let Some(state) = self.partitions.get_mut(&b.partition) {
                state.spare = Some(b);
            }
        }
        Ok(())
    }

    fn send_dead_letters(&self, batches: &[PartitionBatch]) -> Result<(), AggregatorError> {
        let topic = &self.config.topics.dead_letter;
        let sends = batches.iter().flat_map(|b| b.dead.iter()).map(|d| {
            let partition = d.partition.to_string();
            let offset = d.offset.to_string();
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "dotmac-reason",
                    value: Some(d.reason.as_bytes()),
                })
                .insert(Header {
                    key: "dotmac-source-partition",
                    value: Some(partition.as_bytes()),
                })
                .insert(Header {
                    key: "dotmac-source-offset",
                    value: Some(offset.as_bytes()),
                });
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
            if let Some(k) = &d.key {
                record = record.key(k.as_slice());
            }
            if let Some(p) = &d.payload {
                record = record.payload(p.as_slice());
            }
            self.producer
                .send(record, Timeout::After(Duration::from_secs(10)))
        });
        self.acknowledged(sends)
            .map_err(|e| AggregatorError::DeadLetter(e.to_string()))
    }

    /// Waits for every send; the first refusal, if any.
    fn acknowledged<F>(&self, sends: impl Iterator<Item = F>) -> Result<(), KafkaError>
    where
        F: std::future::Future<Output = rdkafka::producer::future_producer::OwnedDeliveryResult>,
    {
        for r in self.handle.block_on(join_all(sends)) {
            r.map_err(|(e, _)| e)?;
        }
        Ok(())
    }

    /// The events topic's partition count, read again with each catalog
    /// refresh. Without it no record can be placed, so the flush fails
    /// and the records stay pending.
    fn partition_count(&mut self) -> Result<i32, AggregatorError> {
        if let Some((n, at)) = self.partition_count {
            if at.elapsed() < self.config.catalog_refresh {
                return Ok(n);
            }
        }
        let topic = &self.config.topics.events;
        let metadata = self
            .consumer
            .fetch_metadata(Some(topic), Duration::from_secs(5))?;
        let n = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .map(|t| t.partitions().len())
            .sum::<usize>();
        let n = i32::try_from(n).unwrap_or(i32::MAX);
        if n == 0 {
            return Err(AggregatorError::NoPartitions(topic.clone()));
        }
        self.partition_count = Some((n, Instant::now()));
        Ok(n)
    }

    /// Produces each record found on a partition that does not own its key
    /// to the owner, with its key, bytes and broker time, before the batch
    /// that covers the original commits (at least once: the owner's dedupe
    /// set makes a second copy a duplicate).
    fn send_forwards(&self, batches: &[PartitionBatch]) -> Result<(), AggregatorError> {
        let topic = &self.config.topics.events;
        let sends = batches.iter().flat_map(|b| b.forwards.iter()).map(|f| {
            let origin = format!("{}/{}", f.from_partition, f.from_offset);
            let headers = OwnedHeaders::new().insert(Header {
                key: "dotmac-forwarded-from",
                value: Some(origin.as_bytes()),
            });
            let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic)
                .partition(f.to_partition)
                .key(f.key.as_slice())
                .headers(headers)
                .timestamp(f.received_at_us / 1000);
            if let Some(p) = &f.payload {
                record = record.payload(p.as_slice());
            }
            self.producer
                .send(record, Timeout::After(Duration::from_secs(10)))
        });
        self.acknowledged(sends)
            .map_err(|e| AggregatorError::Forward(e.to_string()))
    }

    fn commit(&self, offsets: &[(i32, i64)], mode: CommitMode) {
        if offsets.is_empty() {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        for (p, next) in offsets {
            if let Err(e) =
                tpl.add_partition_offset(&self.config.topics.events, *p, Offset::Offset(*next))
            {
                tracing::warn!(error = %e, "building the offset commit");
            }
        }
        // Losing a commit costs only a re-read: the batch rows are the truth.
        if let Err(e) = self.consumer.commit(&tpl, mode) {
            tracing::debug!(error = %e, "offset commit failed; the next owner skips by batch rows");
        }
    }

    fn prune_dedupe(&mut self, limits: &TimeLimits) {
        let mut keys = 0usize;
        let mut bytes = 0usize;
        let prune = self.last_prune.elapsed() >= Duration::from_secs(60);
        for state in self.partitions.values_mut() {
            if prune {
                state
                    .dedupe
                    .prune_before(limits.horizon_start().timestamp());
            }
            keys += state.dedupe.len();
            bytes += state.dedupe.approx_bytes();
        }
        if prune {
            self.last_prune = Instant::now();
        }
        self.stats.dedupe_keys.store(keys as u64, Ordering::Relaxed);
        self.stats
            .dedupe_bytes
            .store(bytes as u64, Ordering::Relaxed);
    }

    /// Graceful shutdown: flush what is pending (retrying for a while),
    /// commit synchronously, leave the group.
    fn drain(&mut self) -> Result<(), AggregatorError> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut result = Ok(());
        while self.pending_total > 0 {
            match self.flush() {
                Ok(()) => {
                    result = Ok(());
                    break;
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::warn!(error = %e, "drain flush failed; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => {
                    // Unflushed records are uncommitted: the next owner reads them.
                    result = Err(e);
                    break;
                }
            }
        }
        // Only offsets of flushed records: committing the consumer's position
        // would skip records whose flush failed.
        let flushed: Vec<(i32, i64)> = self.flushed_offsets.iter().map(|(p, o)| (*p, *o)).collect();
        self.commit(&flushed, CommitMode::Sync);
        self.consumer.unsubscribe();
        tracing::info!("aggregator stopped");
        result
    }
}

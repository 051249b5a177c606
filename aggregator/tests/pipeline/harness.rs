//! A pipeline per test, with no API around it: a fresh ClickHouse
//! database, its own topics and consumer group on the shared broker, a
//! fixed catalog of tenants and meters, an aggregator that can be started
//! and stopped, and a clock the test sets.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dotmac_aggregator::catalog::{Catalog, CatalogFuture, CatalogSource};
use dotmac_aggregator::store::{BatchTotals, UsageStore};
use dotmac_aggregator::testkit::{self, RawRecord};
use dotmac_aggregator::{AggregatorConfig, AggregatorError, AggregatorStats};
use dotmac_ingest::kafka::{create_topics, Topics};
use dotmac_schema::usage::{Aggregation, Meter, RollupKey, RollupState, Window};
use dotmac_schema::{ManualClock, TenantId};
use serde_json::{json, Value};
use tokio::sync::watch;

/// Where the test clock stands: a fixed instant, whatever today is.
pub const TEST_NOW: &str = "2026-11-16T12:00:00Z";

pub fn brokers() -> String {
    std::env::var("DOTMAC_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn clickhouse_url() -> String {
    std::env::var("DOTMAC_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        &random[..8]
    )
}

/// The tenants every pipeline knows, by slug: two that meter, one that
/// does not (suspended tenants' usage is dead-lettered).
const TENANTS: [(&str, &str); 3] = [
    ("acme-fiber", "active"),
    ("comet-wireless", "active"),
    ("bolt-broadband", "suspended"),
];

pub struct Pipeline {
    pub config: AggregatorConfig,
    pub usage: UsageStore,
    pub clock: ManualClock,
    /// slug → id.
    tenants: BTreeMap<String, String>,
    /// Tenant states, read by every catalog load of the aggregators
    /// spawned (a tenant activated later is seen on their next load).
    states: Arc<Mutex<BTreeMap<String, String>>>,
    meters: Mutex<Vec<Meter>>,
}

pub struct RunningAggregator {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), AggregatorError>>,
    pub stats: Arc<AggregatorStats>,
}

impl RunningAggregator {
    /// Graceful stop: drains, commits, leaves the group.
    pub async fn stop(self) {
        self.stop.send(true).unwrap();
        self.handle.await.unwrap().unwrap();
    }
}

impl Pipeline {
    pub async fn start() -> Pipeline {
        // DOTMAC_LOG=info shows the aggregator's log in failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("DOTMAC_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let name = unique("dotmac_t");
        let clock = ManualClock::new(TEST_NOW.parse().unwrap());
        let mut config = AggregatorConfig::new(&brokers());
        config.group_id = format!("{name}.aggregator");
        config.topics = Topics {
            events: format!("{name}.usage.events"),
            dead_letter: format!("{name}.usage.dead-letter"),
            partitions: 3,
        };
        config.flush_interval = Duration::from_millis(100);
        // Late and early events are judged by the test's clock.
        config.clock = Arc::new(clock.clone());
        let usage = UsageStore::new(dotmac_aggregator::clickhouse::ClickHouse::new(
            &clickhouse_url(),
            &name,
        ));
        usage.migrate().await.expect("clickhouse migration");
        create_topics(&config.brokers, &config.security, &config.topics)
            .await
            .expect("topics");
        let mut tenants = BTreeMap::new();
        let mut states = BTreeMap::new();
        for (slug, state) in TENANTS {
            let id = TenantId::new().to_string();
            states.insert(id.clone(), state.to_owned());
            tenants.insert(slug.to_owned(), id);
        }
        Pipeline {
            config,
            usage,
            clock,
            tenants,
            states: Arc::new(Mutex::new(states)),
            meters: Mutex::new(Vec::new()),
        }
    }

    /// A tenant activated now, after any catalog already loaded.
    pub fn activate_tenant(&self) -> String {
        let id = TenantId::new().to_string();
        self.states
            .lock()
            .unwrap()
            .insert(id.clone(), "active".to_owned());
        id
    }

    pub fn tenant(&self, slug: &str) -> String {
        self.tenants[slug].clone()
    }

    /// Adds a meter to the catalog of aggregators spawned from now on.
    pub fn meter(
        &self,
        slug: &str,
        event_type: &str,
        aggregation: Aggregation,
        value_path: Option<&str>,
        group_by: &[&str],
        window: Window,
    ) {
        let meter = Meter {
            slug: slug.into(),
            event_type: event_type.into(),
            aggregation,
            value_path: value_path.map(str::to_owned),
            group_by: group_by.iter().map(|g| (*g).to_owned()).collect(),
            window,
            allow_negative: false,
        };
        meter.validate().expect("a valid meter");
        self.meters.lock().unwrap().push(meter);
    }

    /// Lets every meter added so far take negative values (as a correction
    /// feed's meter would); meters refuse them by default.
    pub fn allow_negative_values(&self) {
        for m in self.meters.lock().unwrap().iter_mut() {
            m.allow_negative = true;
        }
    }

    pub fn spawn_aggregator(&self) -> RunningAggregator {
        self.spawn_aggregator_with(self.config.clone())
    }

    /// An aggregator of this pipeline's group with its own settings.
    pub fn spawn_aggregator_with(&self, config: AggregatorConfig) -> RunningAggregator {
        let catalog = LiveCatalog {
            states: self.states.clone(),
            meters: self.meters.lock().unwrap().clone(),
        };
        let stats = Arc::new(AggregatorStats::default());
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(dotmac_aggregator::run(
            config,
            self.usage.clone(),
            Arc::new(catalog),
            stats.clone(),
            stopped,
            None,
        ));
        RunningAggregator {
            stop,
            handle,
            stats,
        }
    }

    /// Produces records as they are (any key, any bytes), acknowledged.
    pub async fn produce(&self, records: &[RawRecord]) {
        testkit::produce(&self.config.brokers, &self.config.topics.events, records).await
    }

    /// Waits until committed batches account for `records` records.
    pub async fn wait_for_records(&self, records: u64, timeout: Duration) -> BatchTotals {
        testkit::wait_for_records(&self.usage, records, timeout).await
    }

    pub async fn rollups(&self, meter: &str) -> BTreeMap<RollupKey, RollupState> {
        self.usage.rollups(None, meter, 0, i64::MAX).await.unwrap()
    }

    /// Reads `n` records of the dead-letter topic: (key, payload, reason).
    pub fn dead_letters(&self, n: usize) -> Vec<(Option<String>, Vec<u8>, String)> {
        testkit::dead_letters(&self.config.brokers, &self.config.topics.dead_letter, n)
    }

    pub async fn cleanup(self) {
        self.usage.clickhouse().drop_database().await.ok();
    }
}

/// A CloudEvents usage event as JSON.
pub fn event(id: &str, event_type: &str, time: &str, data: Value) -> Value {
    json!({ "specversion": "1.0", "id": id, "source": "//isp/test", "type": event_type, "time": time, "data": data })
}

/// The tenants as they are at each load, with the meters fixed at spawn.
struct LiveCatalog {
    states: Arc<Mutex<BTreeMap<String, String>>>,
    meters: Vec<Meter>,
}

impl CatalogSource for LiveCatalog {
    fn load(&self) -> CatalogFuture<'_> {
        let c = Catalog::new(self.states.lock().unwrap().clone(), self.meters.clone());
        Box::pin(async move { Ok(c) })
    }
}

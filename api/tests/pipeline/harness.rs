//! A pipeline per test: a fresh Postgres (demo tenants), a fresh ClickHouse
//! database, its own topics and consumer group on the shared broker, and an
//! in-process aggregator that can be started and stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dotmac_aggregator::store::{BatchTotals, UsageStore};
use dotmac_aggregator::testkit::{self, RawRecord};
use dotmac_aggregator::{self as aggregator, AggregatorStats};
use dotmac_api::config::Config;
use dotmac_api::pipeline::catalog::StoreCatalog;
use dotmac_schema::usage::{RollupKey, RollupState};
use serde_json::{json, Value};
use tokio::sync::watch;

use crate::support::{unique, Backend, Client, TestServer};

pub fn brokers() -> String {
    std::env::var("DOTMAC_TEST_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

pub fn clickhouse_url() -> String {
    std::env::var("DOTMAC_TEST_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into())
}

pub struct Pipeline {
    pub server: TestServer,
    pub config: Config,
    pub usage: UsageStore,
    pub admin: Client,
    /// slug → id of the demo tenants.
    pub tenants: BTreeMap<String, String>,
}

pub struct RunningAggregator {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<Result<(), aggregator::AggregatorError>>,
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
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Pipeline {
        // DOTMAC_LOG=info shows the aggregator's log in failing tests.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("DOTMAC_LOG")
                    .unwrap_or_else(|_| "warn".into()),
            )
            .with_test_writer()
            .try_init();
        let name = unique("dotmac_t").replace('-', "_");
        let server = TestServer::start_with(Backend::Postgres, |c| {
            c.kafka_brokers = brokers();
            c.clickhouse_url = clickhouse_url();
            c.clickhouse_database = name.clone();
            c.pipeline.events_topic = format!("{name}.usage.events");
            c.pipeline.dead_letter_topic = format!("{name}.usage.dead-letter");
            c.pipeline.group_id = format!("{name}.aggregator");
            c.pipeline.partitions = 3;
            c.pipeline.flush_ms = 100;
            adjust(c);
        })
        .await;
        let config = (*server.app.config).clone();
        let usage = config.usage_store();
        usage.migrate().await.expect("clickhouse migration");
        dotmac_ingest::kafka::create_topics(
            &config.kafka_brokers,
            &config.kafka_security,
            &config.topics(),
        )
        .await
        .expect("topics");
        let admin = server.login(dotmac_api::seed::ADMIN_EMAIL).await;
        let listed = admin
            .gql(
                "{ tenants(first: 50) { edges { node { id slug } } } }",
                json!({}),
            )
            .await;
        let tenants = listed.data()["tenants"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["node"]["slug"].as_str().unwrap().to_owned(),
                    e["node"]["id"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        Pipeline {
            server,
            config,
            usage,
            admin,
            tenants,
        }
    }

    pub fn tenant(&self, slug: &str) -> String {
        self.tenants[slug].clone()
    }

    pub async fn create_meter(&self, input: Value) -> Value {
        let answer = self
            .admin
            .gql(
                "mutation($i: CreateMeterInput!) { createMeter(input: $i) { id slug } }",
                json!({ "i": input }),
            )
            .await;
        answer.data()["createMeter"].clone()
    }

    pub fn spawn_aggregator(&self) -> RunningAggregator {
        let mut settings = self.config.aggregator().unwrap();
        // Late and early events are judged by the test's clock.
        settings.clock = self.server.app.clock.clone();
        let catalog = Arc::new(StoreCatalog::new(self.server.app.store.clone()));
        let hook = dotmac_api::pipeline::usage_updates::publish_usage_updates(
            self.server.app.bus.clone(),
            catalog.clone(),
        );
        let stats = Arc::new(AggregatorStats::default());
        let (stop, stopped) = watch::channel(false);
        let handle = tokio::spawn(aggregator::run(
            settings,
            self.usage.clone(),
            catalog,
            stats,
            stopped,
            Some(hook),
        ));
        RunningAggregator { stop, handle }
    }

    /// Produces records as they are (any key, any bytes), acknowledged.
    pub async fn produce(&self, records: &[RawRecord]) {
        let topic = &self.config.pipeline.events_topic;
        testkit::produce(&self.config.kafka_brokers, topic, records).await
    }

    /// Waits until committed batches account for `records` records.
    pub async fn wait_for_records(&self, records: u64, timeout: Duration) -> BatchTotals {
        testkit::wait_for_records(&self.usage, records, timeout).await
    }

    pub async fn rollups(&self, meter: &str) -> BTreeMap<RollupKey, RollupState> {
        self.usage.rollups(None, meter, 0, i64::MAX).await.unwrap()
    }

    pub async fn cleanup(self) {
        self.usage.clickhouse().drop_database().await.ok();
    }
}

/// A CloudEvents usage event as JSON.
pub fn event(id: &str, event_type: &str, time: &str, data: Value) -> Value {
    json!({ "specversion": "1.0", "id": id, "source": "//isp/test", "type": event_type, "time": time, "data": data })
}

//! Kafka for the usage pipeline: topic creation (the test broker does not
//! auto-create), client settings shared by every client, and the producer
//! library an ISP deployment embeds to produce usage straight to Kafka under
//! the intake's contract: the event validated by the same decoder, the
//! tenant id as the record key, idempotent and acknowledged by all replicas.

use std::time::Duration;

use dotmac_schema::usage::{EventError, EventView};
use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

/// Where the pipeline's topics live.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Topics {
    pub events: String,
    pub dead_letter: String,
    /// Partitions of the events topic at creation (the unit of parallelism).
    pub partitions: i32,
}

impl Default for Topics {
    fn default() -> Topics {
        Topics {
            events: "usage.events".into(),
            dead_letter: "usage.dead-letter".into(),
            partitions: 4,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error(transparent)]
    Invalid(#[from] EventError),
    #[error("tenant: must be a tenant id")]
    NoTenant,
    #[error("the broker did not acknowledge the event: {0}")]
    Broker(KafkaError),
}

#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("creating topic {topic}: {reason}")]
    Create { topic: String, reason: String },
    #[error("kafka client: {0}")]
    Client(#[from] KafkaError),
}

/// Settings every client of the pipeline starts from.
pub fn client_config(brokers: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "dotmac")
        // A broker that is briefly away is retried, not reported.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log_level", "4");
    c
}

/// Creates the events and dead-letter topics when they are missing.
pub async fn create_topics(brokers: &str, topics: &Topics) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let wanted = [
        NewTopic::new(
            &topics.events,
            topics.partitions,
            TopicReplication::Fixed(1),
        ),
        NewTopic::new(&topics.dead_letter, 1, TopicReplication::Fixed(1)),
    ];
    let options =
        AdminOptions::new().operation_timeout(Some(Timeout::After(Duration::from_secs(20))));
    for result in admin.create_topics(&wanted, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(TopicError::Create {
                    topic,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Produces usage events for tenants, the way `POST /v1/events` does.
#[derive(Clone)]
pub struct UsageProducer {
    producer: FutureProducer,
    topic: String,
}

impl UsageProducer {
    /// An idempotent producer (no duplicates from its own retries), waiting
    /// for every in-sync replica before an event counts as sent.
    pub fn new(brokers: &str, topic: &str) -> Result<UsageProducer, KafkaError> {
        let producer = client_config(brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("message.timeout.ms", "30000")
            .create()?;
        Ok(UsageProducer {
            producer,
            topic: topic.to_owned(),
        })
    }

    /// Checks `event` with the intake's decoder, then produces it keyed by
    /// `tenant` and waits for the broker's acknowledgement.
    pub async fn send(&self, tenant: &str, event: &[u8]) -> Result<(), ProduceError> {
        EventView::decode(event)?;
        self.send_unchecked(tenant, event).await
    }

    /// Produces bytes already validated by the caller.
    pub async fn send_unchecked(&self, tenant: &str, event: &[u8]) -> Result<(), ProduceError> {
        if tenant.is_empty() {
            return Err(ProduceError::NoTenant);
        }
        let record = FutureRecord::to(&self.topic).key(tenant).payload(event);
        self.producer
            .send(record, Timeout::After(Duration::from_secs(30)))
            .await
            .map(drop)
            .map_err(|(e, _)| ProduceError::Broker(e))
    }

    /// Produces every event (already validated) concurrently and reports
    /// each one's outcome, in order.
    pub async fn send_all(&self, tenant: &str, events: &[&[u8]]) -> Vec<Result<(), ProduceError>> {
        join_all(events.iter().map(|e| self.send_unchecked(tenant, e))).await
    }

    /// Waits until everything queued is delivered or `timeout` passes.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaError> {
        self.producer.flush(Timeout::After(timeout))
    }
}

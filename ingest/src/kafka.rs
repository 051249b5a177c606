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

impl Topics {
    /// Where aggregators draw the epochs of their partition claims: one
    /// partition, so its offsets order every claim (`dotmac migrate`
    /// creates it with the others).
    pub fn epochs(&self) -> String {
        format!("{}.epochs", self.events)
    }
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

/// How the pipeline's clients reach the broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No authentication, no encryption: a broker on a private network
    /// only the platform reaches (the development default).
    #[default]
    Plaintext,
    SaslPlaintext,
    Ssl,
    SaslSsl,
}

/// How a SASL client proves who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SaslMechanism {
    #[serde(rename = "PLAIN")]
    Plain,
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// The credentials and transport security of every client of the pipeline
/// (the intake's producer, the aggregator's consumer and dead-letter
/// producer, topic creation). Only the platform's own services hold a
/// broker credential: ISP deployments send usage through `POST
/// /v1/events` with a tenant's API key, and the intake keys each record by
/// that key's tenant, so no one else can produce a record for a tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    #[serde(default)]
    pub protocol: SecurityProtocol,
    #[serde(default)]
    pub sasl_mechanism: Option<SaslMechanism>,
    #[serde(default)]
    pub sasl_username: Option<String>,
    #[serde(default)]
    pub sasl_password: Option<String>,
    /// PEM file of the CA that signed the broker's certificate (TLS).
    #[serde(default)]
    pub ssl_ca_location: Option<String>,
}

/// A security setting that cannot work, naming its field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SecurityError {
    pub field: &'static str,
    pub reason: &'static str,
}

impl KafkaSecurity {
    /// Whether the settings fit together: SASL needs a mechanism, a user
    /// and a password; credentials without SASL would be ignored.
    pub fn check(&self) -> Result<(), SecurityError> {
        let sasl = matches!(
            self.protocol,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        );
        let err = |field, reason| Err(SecurityError { field, reason });
        if sasl {
            if self.sasl_mechanism.is_none() {
                return err("sasl_mechanism", "is required with a SASL protocol");
            }
            if self.sasl_username.as_deref().unwrap_or_default().is_empty() {
                return err("sasl_username", "is required with a SASL protocol");
            }
            if self.sasl_password.as_deref().unwrap_or_default().is_empty() {
                return err("sasl_password", "is required with a SASL protocol");
            }
        } else if self.sasl_mechanism.is_some()
            || self.sasl_username.is_some()
            || self.sasl_password.is_some()
        {
            return err(
                "protocol",
                "must be sasl_plaintext or sasl_ssl when SASL credentials are set",
            );
        }
        Ok(())
    }

    fn apply(&self, c: &mut ClientConfig) {
        let protocol = match self.protocol {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        };
        c.set("security.protocol", protocol);
        if let Some(m) = self.sasl_mechanism {
            c.set("sasl.mechanism", m.as_str());
        }
        if let Some(u) = &self.sasl_username {
            c.set("sasl.username", u);
        }
        if let Some(p) = &self.sasl_password {
            c.set("sasl.password", p);
        }
        if let Some(ca) = &self.ssl_ca_location {
            c.set("ssl.ca.location", ca);
        }
    }
}

/// Settings every client of the pipeline starts from: the brokers and how
/// to reach them.
pub fn client_config(brokers: &str, security: &KafkaSecurity) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("client.id", "dotmac")
        // A broker that is briefly away is retried, not reported.
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "2000")
        .set("log_level", "4");
    security.apply(&mut c);
    c
}

/// Settings of every producer of the events topic: idempotent, acknowledged
/// by all in-sync replicas, and placing keys with Kafka's own partitioner
/// (the Java client's and kafka-python's, [`crate::partition`]), so that a
/// tenant's records land on one partition whichever client sends them.
/// (librdkafka's default, CRC32, would place them elsewhere; the aggregator
/// would then move each record to its owner, at the cost of a copy.)
pub fn events_producer_config(brokers: &str, security: &KafkaSecurity) -> ClientConfig {
    let mut c = client_config(brokers, security);
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random");
    c
}

/// Creates the events and dead-letter topics when they are missing.
pub async fn create_topics(
    brokers: &str,
    security: &KafkaSecurity,
    topics: &Topics,
) -> Result<(), TopicError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers, security).create()?;
    let epochs = topics.epochs();
    let wanted = [
        NewTopic::new(
            &topics.events,
            topics.partitions,
            TopicReplication::Fixed(1),
        ),
        NewTopic::new(&topics.dead_letter, 1, TopicReplication::Fixed(1)),
        NewTopic::new(&epochs, 1, TopicReplication::Fixed(1)),
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
    pub fn new(
        brokers: &str,
        security: &KafkaSecurity,
        topic: &str,
    ) -> Result<UsageProducer, KafkaError> {
        let producer = events_producer_config(brokers, security)
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

//! The pipeline's Kafka clients sign in to a broker that requires it: with
//! the configured SCRAM credentials the intake's producer creates the
//! topics and is acknowledged; without them, or with a wrong password, a
//! producer is refused. (The test broker, tansu 0.6, authenticates with
//! SCRAM-SHA-256/512 only, offers no TLS listener and no ACLs.)

use std::time::Duration;

use dotmac_aggregator::testkit::OwnBroker;
use dotmac_ingest::kafka::{
    client_config, create_topics, KafkaSecurity, SaslMechanism, SecurityProtocol, Topics,
    UsageProducer,
};
use rdkafka::producer::{FutureProducer, FutureRecord};

fn scram(user: &str, password: &str) -> KafkaSecurity {
    KafkaSecurity {
        protocol: SecurityProtocol::SaslPlaintext,
        sasl_mechanism: Some(SaslMechanism::ScramSha512),
        sasl_username: Some(user.to_owned()),
        sasl_password: Some(password.to_owned()),
        ssl_ca_location: None,
    }
}

/// Whether one record to `topic` is acknowledged within a few seconds.
async fn acknowledged(brokers: &str, security: &KafkaSecurity, topic: &str) -> bool {
    let producer: FutureProducer = client_config(brokers, security)
        .set("message.timeout.ms", "4000")
        .create()
        .expect("producer");
    producer
        .send(
            FutureRecord::to(topic).key("t").payload("x"),
            Duration::from_secs(5),
        )
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_sign_in_to_a_broker_that_requires_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = OwnBroker::start(dir.path(), "sqlite://broker.db");
    broker.create_user("dotmac-intake", "a-long-broker-password");
    broker.require_authentication();
    let brokers = broker.address();
    let platform = scram("dotmac-intake", "a-long-broker-password");
    platform.check().unwrap();
    let topics = Topics {
        events: "sasl.usage.events".into(),
        dead_letter: "sasl.usage.dead-letter".into(),
        partitions: 1,
    };
    create_topics(&brokers, &platform, &topics)
        .await
        .expect("topics, signed in");
    let intake = UsageProducer::new(&brokers, &platform, &topics.events).unwrap();
    let event = br#"{"specversion":"1.0","id":"e1","source":"//sasl","type":"session","time":"2026-11-16T12:00:00Z","data":{}}"#;
    intake
        .send("ten_00000000000000000000000000000001", event)
        .await
        .expect("the signed-in intake is acknowledged");
    assert!(acknowledged(&brokers, &platform, &topics.events).await);
    // Anyone else is refused: no credentials, or the wrong password.
    assert!(!acknowledged(&brokers, &KafkaSecurity::default(), &topics.events).await);
    assert!(
        !acknowledged(
            &brokers,
            &scram("dotmac-intake", "guessed-password"),
            &topics.events
        )
        .await
    );
}

#[test]
fn security_settings_that_cannot_work_name_their_field() {
    let mut s = scram("u", "p");
    s.sasl_mechanism = None;
    assert_eq!(s.check().unwrap_err().field, "sasl_mechanism");
    let mut s = scram("u", "p");
    s.sasl_password = Some(String::new());
    assert_eq!(s.check().unwrap_err().field, "sasl_password");
    let mut s = scram("u", "p");
    s.protocol = SecurityProtocol::Plaintext;
    assert_eq!(s.check().unwrap_err().field, "protocol");
    assert!(KafkaSecurity::default().check().is_ok());
}

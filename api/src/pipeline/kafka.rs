//! The production [`UsageSink`]: accepted events are produced to the events
//! topic, keyed by tenant, and count as sent once the broker acknowledged.

use dotmac_ingest::kafka::{KafkaSecurity, UsageProducer};

use super::UsageSink;

pub struct KafkaSink(UsageProducer);

impl KafkaSink {
    pub fn connect(
        brokers: &str,
        security: &KafkaSecurity,
        topic: &str,
    ) -> Result<KafkaSink, String> {
        let producer = UsageProducer::new(brokers, security, topic).map_err(|e| e.to_string())?;
        Ok(KafkaSink(producer))
    }
}

#[async_trait::async_trait]
impl UsageSink for KafkaSink {
    async fn send_all(&self, tenant: &str, events: &[&[u8]]) -> Vec<Result<(), String>> {
        self.0
            .send_all(tenant, events)
            .await
            .into_iter()
            .map(|r| r.map_err(|e| e.to_string()))
            .collect()
    }
}

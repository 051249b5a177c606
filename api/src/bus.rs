//! Events fanned out to subscribers (tenant lifecycle changes, committed
//! usage): in-process in `dev`, through Redis pub/sub in `serve` and
//! `aggregate` so that every API process behind a balancer delivers every
//! event, whichever process published it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use dotmac_schema::{TenantAction, TenantState};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::error::ApiResult;

/// A tenant changed state (or was created, when `from` is `None`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantEvent {
    pub tenant_id: String,
    pub reseller_id: Option<String>,
    pub from: Option<TenantState>,
    pub to: TenantState,
    pub action: Option<TenantAction>,
    pub reason: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

/// New usage of a meter was committed for a tenant (by an aggregator flush).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageUpdate {
    pub tenant_id: String,
    pub reseller_id: Option<String>,
    pub meter: String,
    pub committed_at: DateTime<Utc>,
}

/// An invoice was finalized (immutable, numbered).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InvoiceFinalized {
    pub invoice_id: String,
    pub tenant_id: String,
    pub reseller_id: Option<String>,
    pub number: String,
    pub total: String,
    pub currency: String,
    pub finalized_at: DateTime<Utc>,
}

/// A tenant's instance reported a new status (phase, Ready condition).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstanceChanged {
    pub tenant_id: String,
    pub reseller_id: Option<String>,
    pub phase: dotmac_orchestrator::Phase,
    pub ready: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

/// A rollout of a framework version moved on (a wave done, a heartbeat, its end).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RolloutChanged {
    pub rollout_id: String,
    pub state: dotmac_schema::RolloutState,
    pub wave: i32,
    pub waves: i32,
    pub upgraded: i32,
    pub remaining: i32,
    pub stopped_reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// Everything that travels on the bus.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BusEvent {
    Tenant(TenantEvent),
    Usage(UsageUpdate),
    Invoice(InvoiceFinalized),
    Instance(InstanceChanged),
    /// Platform admins' business: no tenant's subscriber ever receives it.
    Rollout(RolloutChanged),
}

/// Where events are published and received. Two implementations: [`LocalBus`] and [`RedisBus`].
#[async_trait::async_trait]
pub trait EventBus: Send + Sync {
    async fn publish(&self, event: &BusEvent) -> ApiResult<()>;
    /// Publishes `events` in order; a bus that can sends them in one round
    /// trip (a period close announces thousands of invoices at once).
    async fn publish_all(&self, events: &[BusEvent]) -> ApiResult<()> {
        for event in events {
            self.publish(event).await?;
        }
        Ok(())
    }
    fn subscribe(&self) -> broadcast::Receiver<BusEvent>;
}

const CAPACITY: usize = 1024;

/// In-process fan-out, for the embedded mode.
pub struct LocalBus {
    tx: broadcast::Sender<BusEvent>,
}

impl LocalBus {
    pub fn new() -> Arc<Self> {
        Arc::new(LocalBus {
            tx: broadcast::channel(CAPACITY).0,
        })
    }
}

#[async_trait::async_trait]
impl EventBus for LocalBus {
    async fn publish(&self, event: &BusEvent) -> ApiResult<()> {
        // No receiver is not an error: nobody is listening.
        let _ = self.tx.send(event.clone());
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.tx.subscribe()
    }
}

/// Redis pub/sub: publishes to a channel; one background task per process
/// listens to it (reconnecting with backoff) and feeds local subscribers.
pub struct RedisBus {
    conn: redis::aio::MultiplexedConnection,
    channel: String,
    local: broadcast::Sender<BusEvent>,
}

impl RedisBus {
    pub async fn connect(url: &str, channel: &str) -> ApiResult<Arc<Self>> {
        let client = redis::Client::open(url)?;
        let conn = client.get_multiplexed_async_connection().await?;
        let local = broadcast::channel(CAPACITY).0;
        let bus = Arc::new(RedisBus {
            conn,
            channel: channel.to_owned(),
            local: local.clone(),
        });
        let channel = channel.to_owned();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        tokio::spawn(listen(client, channel, local, ready_tx));
        // Wait until the first SUBSCRIBE is in place so that an event
        // published right after start-up is not missed.
        let _ = tokio::time::timeout(Duration::from_secs(5), ready_rx).await;
        Ok(bus)
    }
}

async fn listen(
    client: redis::Client,
    channel: String,
    local: broadcast::Sender<BusEvent>,
    ready: tokio::sync::oneshot::Sender<()>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(100);
    loop {
        match client.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                Ok(()) => {
                    backoff = Duration::from_millis(100);
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                    let mut stream = pubsub.on_message();
                    while let Some(msg) = stream.next().await {
                        match serde_json::from_slice::<BusEvent>(msg.get_payload_bytes()) {
                            Ok(event) => {
                                let _ = local.send(event);
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "undecodable event on redis")
                            }
                        }
                    }
                    tracing::warn!("redis pub/sub stream ended; reconnecting");
                }
                Err(e) => tracing::warn!(error = %e, "redis subscribe failed"),
            },
            Err(e) => tracing::warn!(error = %e, "redis pub/sub connection failed"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

#[async_trait::async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: &BusEvent) -> ApiResult<()> {
        let payload = serde_json::to_string(event)
            .map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
        let mut conn = self.conn.clone();
        redis::cmd("PUBLISH")
            .arg(&self.channel)
            .arg(payload)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    async fn publish_all(&self, events: &[BusEvent]) -> ApiResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for event in events {
            let payload = serde_json::to_string(event)
                .map_err(|e| crate::error::ApiError::internal(e.to_string()))?;
            pipe.cmd("PUBLISH").arg(&self.channel).arg(payload).ignore();
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn).await?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.local.subscribe()
    }
}

//! The outbox: announcements (a tenant's lifecycle, finalized invoices) are
//! written in the transaction of the change they announce, and a relay in
//! every process publishes what waits, so an announcement exists if and
//! only if its change committed. A process that dies between its commit and
//! the publish loses nothing: any relay publishes it later. Delivery is at
//! least once (a relay that dies after publishing, before marking, publishes
//! again), in the order recorded within one relay's batch.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::TimeDelta;
use dotmac_schema::SharedClock;
use tokio::sync::Notify;

use crate::bus::{BusEvent, EventBus};
use crate::error::{ApiError, ApiResult};
use crate::store::outbox_rows::{self, OutboxEntry};
use crate::store::{Store, Tx};

/// Announcements published per relay transaction.
const RELAY_BATCH: u64 = 500;
/// How often a relay looks for announcements nobody woke it for (those of
/// a process that died, or of another process's CLI run).
const RELAY_POLL: Duration = Duration::from_secs(1);
/// How long published announcements are kept (for an operator's question
/// "was it sent?"), and how often the relay forgets older ones.
const KEEP_PUBLISHED: TimeDelta = TimeDelta::days(7);
const FORGET_EVERY: Duration = Duration::from_secs(600);

/// The variable that makes a test's process die right after a commit,
/// before its announcement is published (value: [`CRASH_BEFORE_PUBLISH`]).
pub const FAILPOINT_VAR: &str = "DOTMAC_TEST_FAILPOINT";
pub const CRASH_BEFORE_PUBLISH: &str = "outbox-before-publish";

/// Where use cases record announcements; the relay publishes them.
pub struct Outbox {
    store: Store,
    bus: Arc<dyn EventBus>,
    clock: SharedClock,
    wake: Notify,
}

impl Outbox {
    pub fn new(store: Store, bus: Arc<dyn EventBus>, clock: SharedClock) -> Arc<Outbox> {
        Arc::new(Outbox {
            store,
            bus,
            clock,
            wake: Notify::new(),
        })
    }

    /// Records `events` in `tx`: they will be published if and only if it
    /// commits. Call [`Outbox::committed`] after the commit.
    pub async fn record(&self, tx: &Tx, events: &[BusEvent]) -> ApiResult<()> {
        let entries = events
            .iter()
            .map(entry)
            .collect::<ApiResult<Vec<OutboxEntry>>>()?;
        outbox_rows::record(tx, self.clock.now(), entries).await
    }

    /// After a commit that recorded announcements: the relay publishes them
    /// now rather than at its next poll.
    pub fn committed(&self) {
        if crash_before_publish() {
            // A test's stand-in for a crash between commit and publish.
            std::process::abort();
        }
        self.wake.notify_one();
    }

    /// Publishes up to one batch of waiting announcements and marks them
    /// published; returns how many. The rows stay claimed (locked on
    /// Postgres) until they are marked, so concurrent relays skip them; a
    /// failed publish rolls the claim back for a later attempt.
    pub async fn relay_once(&self) -> ApiResult<usize> {
        let tx = self.store.begin_system().await?;
        let waiting = outbox_rows::claim_waiting(&tx, self.store.backend(), RELAY_BATCH).await?;
        if waiting.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut events = Vec::with_capacity(waiting.len());
        for (id, text) in &waiting {
            match serde_json::from_str::<BusEvent>(text) {
                Ok(e) => events.push(e),
                // Written by an older or newer version of this process: it
                // would block the outbox for ever; logged and dropped.
                Err(e) => {
                    tracing::error!(id = %id, error = %e, "an outbox row is not an event; dropped")
                }
            }
        }
        self.bus.publish_all(&events).await?;
        let ids: Vec<String> = waiting.into_iter().map(|(id, _)| id).collect();
        outbox_rows::mark_published(&tx, &ids, self.clock.now()).await?;
        tx.commit().await?;
        Ok(ids.len())
    }

    /// Publishes until nothing waits (a CLI run does this before it exits).
    pub async fn drain(&self) -> ApiResult<usize> {
        let mut total = 0;
        loop {
            let n = self.relay_once().await?;
            total += n;
            if (n as u64) < RELAY_BATCH {
                return Ok(total);
            }
        }
    }

    /// The relay: publishes when woken after a commit and every
    /// [`RELAY_POLL`], forgets old published rows now and then. Runs for
    /// the life of the process; a failure is logged and retried.
    pub async fn run(self: Arc<Self>) {
        let mut last_forget = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(RELAY_POLL) => {}
            }
            if let Err(e) = self.drain().await {
                tracing::warn!(error = %e, "outbox relay: announcements wait for the next attempt");
            }
            if last_forget.elapsed() >= FORGET_EVERY {
                last_forget = tokio::time::Instant::now();
                match outbox_rows::forget_published(&self.store, self.clock.now(), KEEP_PUBLISHED)
                    .await
                {
                    Ok(n) if n > 0 => {
                        tracing::debug!(forgotten = n, "outbox: published rows forgotten")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "outbox: forgetting published rows failed")
                    }
                }
            }
        }
    }
}

/// An event as an outbox row.
fn entry(event: &BusEvent) -> ApiResult<OutboxEntry> {
    let (kind, tenant_id, reseller_id) = match event {
        BusEvent::Tenant(t) => ("tenant", Some(&t.tenant_id), &t.reseller_id),
        BusEvent::Usage(u) => ("usage", Some(&u.tenant_id), &u.reseller_id),
        BusEvent::Invoice(i) => ("invoice", Some(&i.tenant_id), &i.reseller_id),
        BusEvent::Instance(i) => ("instance", Some(&i.tenant_id), &i.reseller_id),
        BusEvent::Rollout(_) => ("rollout", None, &None),
    };
    Ok(OutboxEntry {
        tenant_id: tenant_id.cloned(),
        reseller_id: reseller_id.clone(),
        kind,
        event: serde_json::to_string(event).map_err(|e| ApiError::internal(e.to_string()))?,
    })
}

fn crash_before_publish() -> bool {
    static SET: OnceLock<bool> = OnceLock::new();
    *SET.get_or_init(|| std::env::var(FAILPOINT_VAR).is_ok_and(|v| v == CRASH_BEFORE_PUBLISH))
}

//! The usage pipeline of `dotmac dev`, in-process on SQLite, behind both
//! ports: as the sink it appends to `usage_log` (standing in for the Kafka
//! topic), as the reader it merges committed parts; a task runs the same fold as `dotmac aggregate` ([`dotmac_aggregator::fold`]) over what was
//! appended. Each flush commits its rollup parts, dedupe keys, dead letters
//! and the log offset in one SQLite transaction, so it counts exactly once
//! by construction. Readers merge parts with the same merge law as in
//! production.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use dotmac_aggregator::catalog::CatalogSource;
use dotmac_aggregator::fold::{PartitionBatch, Record, TimeLimits};
use dotmac_aggregator::rows::RollupPartRow;
use dotmac_aggregator::DedupeSet;
use dotmac_ingest::dedupe::DedupeKey;
use dotmac_schema::usage::{RollupKey, RollupState};
use dotmac_schema::SharedClock;
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait, Value};

use super::catalog::StoreCatalog;
use super::usage_updates::publish_usage_updates;
use super::{totals_by_tenant, PeriodUsage, RawEvent, UsageReader, UsageSink};
use crate::bus::EventBus;
use crate::error::{ApiError, ApiResult};
use crate::store::Store;
use dotmac_aggregator::{FlushHook, FlushSummary};

/// Records folded per flush, at most.
const FLUSH_RECORDS: u64 = 5_000;

pub struct EmbeddedPipeline {
    store: Store,
    catalog: Arc<StoreCatalog>,
    on_flush: FlushHook,
    dedupe_horizon: TimeDelta,
    /// Arrival times, the dedupe horizon and late-event limits read it.
    clock: SharedClock,
}

fn stmt(sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(e.to_string())
}

impl EmbeddedPipeline {
    pub fn new(
        store: Store,
        bus: Arc<dyn EventBus>,
        dedupe_horizon: TimeDelta,
        clock: SharedClock,
    ) -> Arc<EmbeddedPipeline> {
        let catalog = Arc::new(StoreCatalog::new(store.clone()));
        Arc::new(EmbeddedPipeline {
            on_flush: publish_usage_updates(bus, catalog.clone()),
            catalog,
            store,
            dedupe_horizon,
            clock,
        })
    }

    /// Appends accepted events of `tenant` to the log, all or none.
    async fn append(&self, tenant: &str, events: &[&[u8]]) -> ApiResult<()> {
        let tx = self.store.connection().begin().await?;
        let now = self.clock.now().timestamp_micros();
        for e in events {
            tx.execute(stmt(
                "INSERT INTO usage_log (tenant, payload, received_at_us) VALUES (?, ?, ?)",
                vec![tenant.into(), e.to_vec().into(), now.into()],
            ))
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Stores rollup parts as committed (a flush does this inside its
    /// transaction; tests seed usage with it).
    pub async fn insert_parts<C: ConnectionTrait>(
        db: &C,
        parts: &[RollupPartRow],
    ) -> ApiResult<()> {
        for part in parts {
            db.execute(stmt(
                "INSERT INTO usage_rollup_parts (tenant, meter, window_start, part) VALUES (?, ?, ?, ?)",
                vec![
                    part.tenant.clone().into(),
                    part.meter.clone().into(),
                    part.window_start.into(),
                    serde_json::to_string(part).map_err(internal)?.into(),
                ],
            ))
            .await?;
        }
        Ok(())
    }

    /// Commits rollup parts as a flush would (the demo seed's past usage).
    pub async fn commit_parts(&self, parts: &[RollupPartRow]) -> ApiResult<()> {
        Self::insert_parts(self.store.connection(), parts).await
    }

    /// Committed parts of one meter whose windows start in the range, with
    /// their tenants.
    async fn parts(
        &self,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<Vec<(String, RollupPartRow)>> {
        let rows = self
            .store
            .connection()
            .query_all(stmt(
                "SELECT tenant, part FROM usage_rollup_parts WHERE meter = ? AND window_start >= ? AND window_start < ?",
                vec![meter.into(), from_secs.into(), to_secs.into()],
            ))
            .await?;
        let mut parts = Vec::with_capacity(rows.len());
        for row in rows {
            let tenant: String = row.try_get("", "tenant")?;
            let text: String = row.try_get("", "part")?;
            parts.push((
                tenant,
                serde_json::from_str::<RollupPartRow>(&text).map_err(internal)?,
            ));
        }
        Ok(parts)
    }

    /// Committed rollups of one meter, merged (as `UsageStore::rollups`).
    async fn merged_rollups(
        &self,
        tenants: Option<&[String]>,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<BTreeMap<RollupKey, RollupState>> {
        let parts = self
            .parts(meter, from_secs, to_secs)
            .await?
            .into_iter()
            .filter(|(tenant, _)| tenants.is_none_or(|ts| ts.contains(tenant)))
            .map(|(_, part)| part);
        dotmac_aggregator::store::merge_parts(parts).map_err(internal)
    }

    /// Accepted events of the log (their dedupe key was committed), each
    /// once, with its tenant: (tenant, dedupe key, payload). The embedded
    /// counterpart of ClickHouse's committed raw rows, for reconciliation.
    async fn accepted_raw(&self) -> ApiResult<Vec<RawEvent>> {
        use dotmac_ingest::dedupe::DedupeKey;
        use dotmac_schema::usage::EventView;
        let db = self.store.connection();
        let accepted: std::collections::HashSet<String> = db
            .query_all(stmt("SELECT dedupe_key FROM usage_dedupe", vec![]))
            .await?
            .into_iter()
            .filter_map(|r| r.try_get::<String>("", "dedupe_key").ok())
            .collect();
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for row in db
            .query_all(stmt(
                "SELECT tenant, payload FROM usage_log ORDER BY log_offset",
                vec![],
            ))
            .await?
        {
            let tenant: String = row.try_get("", "tenant")?;
            let payload: Vec<u8> = row.try_get("", "payload")?;
            let Ok(event) = EventView::decode(&payload) else {
                continue;
            };
            let key = DedupeKey::new(&tenant, &event.source, &event.id).to_hex();
            if accepted.contains(&key) && seen.insert(key.clone()) {
                out.push((tenant, key, String::from_utf8_lossy(&payload).into_owned()));
            }
        }
        Ok(out)
    }

    /// Folds what the log holds beyond the committed offset, forever.
    pub async fn run(self: Arc<Self>) {
        let mut dedupe = DedupeSet::default();
        let mut loaded = false;
        loop {
            if !loaded {
                match self.load_dedupe().await {
                    Ok(set) => {
                        dedupe = set;
                        loaded = true;
                    }
                    Err(e) => tracing::warn!(error = %e, "loading embedded dedupe keys"),
                }
            }
            if loaded {
                match self.flush_once(&mut dedupe).await {
                    Ok(n) if n as u64 == FLUSH_RECORDS => continue,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "embedded usage flush failed; it is retried")
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn load_dedupe(&self) -> ApiResult<DedupeSet> {
        let since = (self.clock.now() - self.dedupe_horizon).timestamp();
        let rows = self
            .store
            .connection()
            .query_all(stmt(
                "SELECT dedupe_key, event_time FROM usage_dedupe WHERE event_time >= ?",
                vec![since.into()],
            ))
            .await?;
        let mut set = DedupeSet::default();
        for row in rows {
            let hex_key: String = row.try_get("", "dedupe_key")?;
            let mut key = [0u8; 16];
            hex::decode_to_slice(&hex_key, &mut key).map_err(internal)?;
            set.insert(DedupeKey(key), row.try_get("", "event_time")?);
        }
        Ok(set)
    }

    /// One flush; returns how many log records it folded.
    pub async fn flush_once(&self, dedupe: &mut DedupeSet) -> ApiResult<usize> {
        let catalog = self.catalog.load().await.map_err(internal)?;
        let limits = TimeLimits::new(self.clock.now(), self.dedupe_horizon);
        let tx = self.store.connection().begin().await?;
        let last: i64 = match tx
            .query_one(stmt(
                "SELECT last_offset FROM usage_progress WHERE id = 1",
                vec![],
            ))
            .await?
        {
            Some(row) => row.try_get("", "last_offset")?,
            None => 0,
        };
        let rows = tx
            .query_all(stmt(
                "SELECT log_offset, tenant, payload, received_at_us FROM usage_log WHERE log_offset > ? ORDER BY log_offset LIMIT ?",
                vec![last.into(), (FLUSH_RECORDS as i64).into()],
            ))
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(0);
        }
        let mut batch = PartitionBatch::new(0);
        for row in &rows {
            let record = Record {
                partition: 0,
                offset: row.try_get("", "log_offset")?,
                key: Some(row.try_get::<String>("", "tenant")?.into_bytes()),
                payload: Some(row.try_get::<Vec<u8>>("", "payload")?),
                received_at_us: row.try_get("", "received_at_us")?,
            };
            batch.add(&record, &catalog, dedupe, &limits);
        }
        Self::insert_parts(&tx, &batch.part_rows("embedded")).await?;
        for (key, time) in &batch.new_keys {
            tx.execute(stmt(
                "INSERT OR IGNORE INTO usage_dedupe (dedupe_key, event_time) VALUES (?, ?)",
                vec![key.to_hex().into(), (*time).into()],
            ))
            .await?;
        }
        for d in &batch.dead {
            tracing::info!(offset = d.offset, reason = %d.reason, "embedded usage event dead-lettered");
            tx.execute(stmt(
                "INSERT OR REPLACE INTO usage_dead_letters (log_offset, tenant, payload, reason) VALUES (?, ?, ?, ?)",
                vec![
                    d.offset.into(),
                    d.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()).into(),
                    d.payload.clone().into(),
                    d.reason.clone().into(),
                ],
            ))
            .await?;
        }
        tx.execute(stmt(
            "INSERT INTO usage_progress (id, last_offset) VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET last_offset = excluded.last_offset",
            vec![batch.last_offset.into()],
        ))
        .await?;
        tx.commit().await?;

        // Committed: the keys count as seen, and dashboards may refresh.
        for (key, time) in &batch.new_keys {
            dedupe.insert(*key, *time);
        }
        // The same announcement as `dotmac aggregate` makes after a flush.
        (self.on_flush)(&FlushSummary {
            committed_at: self.clock.now(),
            touched: batch
                .rollups
                .keys()
                .map(|k| (k.tenant.clone(), k.meter.clone()))
                .collect(),
            received_at_us: batch.raw.iter().map(|r| r.received_at_us).collect(),
        });
        Ok(rows.len())
    }
}

#[async_trait::async_trait]
impl UsageSink for EmbeddedPipeline {
    async fn send_all(&self, tenant: &str, events: &[&[u8]]) -> Vec<Result<(), String>> {
        // One transaction: every event of the request is taken, or none.
        let outcome = self.append(tenant, events).await.map_err(|e| e.to_string());
        vec![outcome; events.len()]
    }
}

#[async_trait::async_trait]
impl UsageReader for EmbeddedPipeline {
    async fn rollups(
        &self,
        tenants: Option<&[String]>,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<BTreeMap<RollupKey, RollupState>> {
        self.merged_rollups(tenants, meter, from_secs, to_secs)
            .await
    }

    async fn meter_totals(
        &self,
        meters: &[String],
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<PeriodUsage> {
        let mut out = PeriodUsage::default();
        for meter in meters {
            // Each tenant merged on its own: one tenant's bad parts fail
            // its own total only.
            let mut by_tenant: BTreeMap<String, Vec<RollupPartRow>> = BTreeMap::new();
            for (tenant, part) in self.parts(meter, from_secs, to_secs).await? {
                by_tenant.entry(tenant).or_default().push(part);
            }
            for (tenant, parts) in by_tenant {
                let total = dotmac_aggregator::store::merge_parts(parts)
                    .map_err(|e| e.to_string())
                    .and_then(|rollups| totals_by_tenant(rollups).map_err(|e| e.detail()));
                match total {
                    Ok(totals) => {
                        for (t, q) in totals {
                            out.totals.insert((t, meter.clone()), q);
                        }
                    }
                    Err(why) => {
                        out.failed.insert((tenant, meter.clone()), why);
                    }
                }
            }
        }
        Ok(out)
    }

    async fn committed_raw(
        &self,
        tenants: &[String],
        _event_type: &str,
        _from_us: i64,
        _to_us: i64,
    ) -> ApiResult<Vec<RawEvent>> {
        // The log is small (a development database): every accepted event
        // of the tenants, filtered by time by the caller.
        let mut raw = self.accepted_raw().await?;
        raw.retain(|(tenant, _, _)| tenants.contains(tenant));
        Ok(raw)
    }
}

//! The usage tables in ClickHouse: migration, the ordered flush write that
//! makes a batch count exactly once, the recovery reads an aggregator does
//! when it takes a partition over, and committed rollup parts for readers.

use std::collections::BTreeMap;

use dotmac_schema::usage::{merge_into, RollupError, RollupKey, RollupState};

use crate::clickhouse::{quote, ClickHouse, ClickHouseError};
use crate::rows::{BatchRow, PartError, RawRow, RollupPartRow};
use dotmac_ingest::dedupe::DedupeKey;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    ClickHouse(#[from] ClickHouseError),
    #[error(transparent)]
    Part(#[from] PartError),
    #[error("merging stored parts: {0}")]
    Merge(#[from] RollupError),
}

/// The DDL, applied statement by statement (each is idempotent).
pub const MIGRATIONS: &[(&str, &str)] = &[
    (
        "0001_usage",
        include_str!("../../migrations/clickhouse/0001_usage.sql"),
    ),
    (
        "0002_fencing",
        include_str!("../../migrations/clickhouse/0002_fencing.sql"),
    ),
    (
        "0003_compaction",
        include_str!("../../migrations/clickhouse/0003_compaction.sql"),
    ),
];

/// Rows per INSERT request of raw rows and rollup parts.
pub const WRITE_CHUNK_ROWS: usize = 50_000;

/// Each batch's fence, joined on (partition, epoch): `fenced` is 1 and
/// `fenced_from` the lowest fence when a later owner fenced that epoch.
/// (A plain equi-join: ClickHouse 18.16 cannot capture columns in the
/// lambdas a search over claims would need.)
macro_rules! unfenced_batches {
    () => {
        "SELECT write_id FROM usage_batches ANY LEFT JOIN \
         (SELECT partition, epoch, min(fenced_from) AS fenced_from, 1 AS fenced \
         FROM usage_fences GROUP BY partition, epoch) USING (partition, epoch) \
         WHERE (fenced = 0 OR last_offset < fenced_from)"
    };
}

/// Rows count only when their write has a batch row (the commit record)
/// that no later owner of its partition fenced.
pub(crate) const COMMITTED: &str = concat!("write_id IN (", unfenced_batches!(), ")");

/// Rollup windows are compacted in 30-day buckets of `window_start`
/// (seconds), the partition key of both rollup tables.
pub const ROLLUP_BUCKET_SECS: i64 = 2_592_000;

/// Every committed rollup row matching `filter` (a condition on the rollup
/// columns), as one subquery with the parts table's columns: parts of
/// buckets not compacted whose write is committed, and the rows of each
/// compacted bucket's latest compaction. Every read of rollups goes
/// through here, so compaction never changes what a read sees.
pub(crate) fn committed_rollups(filter: &str) -> String {
    format!(
        "(SELECT * FROM usage_rollup_parts WHERE {filter} AND {COMMITTED} \
         AND intDiv(window_start, {ROLLUP_BUCKET_SECS}) NOT IN (SELECT bucket FROM usage_compactions) \
         UNION ALL SELECT * FROM usage_rollup_compacted WHERE {filter} \
         AND write_id IN (SELECT argMax(compaction_id, compacted_at_us) FROM usage_compactions GROUP BY bucket))"
    )
}

/// What a partition's owner learned when it claimed the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// No later claim exists: this owner's batches count.
    Owner,
    /// A claim of a higher epoch exists (this process lost the partition
    /// while it claimed it): its batches from `from` on are fenced.
    Superseded { epoch: u64, from: i64 },
}

/// The fences a claim `(epoch, from)` writes, given every claim of the
/// partition and the lowest fence each epoch already has: each lower
/// epoch (and epoch 0, batches from before fencing) not yet fenced at or
/// below `from` is fenced at `from`; when a higher claim exists this
/// claim's own epoch is fenced at the lowest `from` among them.
pub fn fences_for_claim(
    epoch: u64,
    from: i64,
    claims: &[(u64, i64)],
    fences: &BTreeMap<u64, i64>,
) -> (Vec<(u64, i64)>, Claim) {
    let mut lower: Vec<u64> = claims
        .iter()
        .map(|(e, _)| *e)
        .filter(|e| *e < epoch)
        .chain(std::iter::once(0))
        .collect();
    lower.sort_unstable();
    lower.dedup();
    let mut out: Vec<(u64, i64)> = lower
        .into_iter()
        .filter(|e| fences.get(e).is_none_or(|f| *f > from))
        .map(|e| (e, from))
        .collect();
    let superseded = claims
        .iter()
        .filter(|(e, _)| *e > epoch)
        .min_by_key(|(_, f)| *f)
        .copied();
    let claim = match superseded {
        Some((e, f)) => {
            out.push((epoch, f));
            Claim::Superseded { epoch: e, from: f }
        }
        None => Claim::Owner,
    };
    (out, claim)
}

/// Totals over every committed batch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub struct BatchTotals {
    pub batches: u64,
    pub events: u64,
    pub accepted: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    /// Records moved to the partition owning their key: the rest of
    /// `events` (they are counted again, as accepted or duplicates, there).
    #[serde(default)]
    pub forwarded: u64,
}

/// Each tenant's total of one meter, and the tenants whose parts could not
/// be read or merged, with why: one tenant's bad data fails its own total,
/// never the others'.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantTotals {
    pub totals: BTreeMap<String, RollupState>,
    pub failed: BTreeMap<String, String>,
}

/// One tenant's parts of one meter, grouped by ClickHouse.
#[derive(serde::Deserialize)]
struct TenantRow {
    tenant: String,
    aggregations: Vec<String>,
    values: Vec<String>,
    count: u64,
    uniques: Vec<Vec<String>>,
    latest_times: Vec<i64>,
    latest_ids: Vec<String>,
}

/// The usage tables of one ClickHouse database.
#[derive(Debug, Clone)]
pub struct UsageStore {
    ch: ClickHouse,
}

impl UsageStore {
    pub fn new(ch: ClickHouse) -> UsageStore {
        UsageStore { ch }
    }

    pub fn clickhouse(&self) -> &ClickHouse {
        &self.ch
    }

    /// Creates the database and every table that is missing.
    pub async fn migrate(&self) -> Result<(), ClickHouseError> {
        self.ch.create_database().await?;
        for (_, sql) in MIGRATIONS {
            for statement in statements(sql) {
                // 18.16 has no ADD COLUMN IF NOT EXISTS: asked first.
                if let Some((table, column)) = added_column(&statement) {
                    if self.has_column(table, column).await? {
                        continue;
                    }
                }
                self.ch.execute(&statement).await?;
            }
        }
        Ok(())
    }

    async fn has_column(&self, table: &str, column: &str) -> Result<bool, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            n: u64,
        }
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT count() AS n FROM system.columns WHERE database = currentDatabase() \
                 AND table = {} AND name = {}",
                quote(table),
                quote(column)
            ))
            .await?;
        Ok(rows.first().is_some_and(|r| r.n > 0))
    }

    /// Writes one flush: raw events, then rollup parts, then the batch rows
    /// that commit them. A failure anywhere before the last insert leaves
    /// rows that no reader counts; the replay writes them again under a new
    /// write id.
    pub async fn write_flush(
        &self,
        raw: &[RawRow],
        parts: &[RollupPartRow],
        batches: &[BatchRow],
    ) -> Result<(), ClickHouseError> {
        self.write_rows(raw, parts).await?;
        self.commit_batches(batches).await
    }

    /// A flush's raw rows and parts, which count once their batch rows are
    /// written ([`UsageStore::commit_batches`]).
    pub async fn write_rows(
        &self,
        raw: &[RawRow],
        parts: &[RollupPartRow],
    ) -> Result<(), ClickHouseError> {
        // Raw rows and parts need no atomicity (the batch rows commit them),
        // so they go in bounded requests: the request body, not the flush,
        // sets the memory a write costs.
        for chunk in raw.chunks(WRITE_CHUNK_ROWS) {
            self.ch.insert("usage_raw", chunk).await?;
        }
        for chunk in parts.chunks(WRITE_CHUNK_ROWS) {
            self.ch.insert("usage_rollup_parts", chunk).await?;
        }
        Ok(())
    }

    /// The commit of a flush: one insert of its batch rows.
    pub async fn commit_batches(&self, batches: &[BatchRow]) -> Result<(), ClickHouseError> {
        // Stamped as late as possible: written_at_us - an event's broker
        // timestamp is its event-to-queryable latency, less this last insert.
        let now = chrono::Utc::now().timestamp_micros();
        let stamped: Vec<BatchRow> = batches
            .iter()
            .map(|b| BatchRow {
                written_at_us: now,
                ..b.clone()
            })
            .collect();
        self.ch.insert("usage_batches", &stamped).await
    }

    /// The `usage_raw` partitions (30-day buckets of event time) that hold
    /// rows.
    pub async fn raw_buckets(&self) -> Result<Vec<i64>, ClickHouseError> {
        self.buckets_of("usage_raw").await
    }

    /// Drops one `usage_raw` bucket (retention decides which).
    pub async fn drop_raw_bucket(&self, bucket: i64) -> Result<(), ClickHouseError> {
        self.ch
            .execute(&format!("ALTER TABLE usage_raw DROP PARTITION {bucket}"))
            .await
    }

    /// The buckets (of `window_start`) that have rollup parts.
    pub async fn rollup_buckets(&self) -> Result<Vec<i64>, ClickHouseError> {
        self.buckets_of("usage_rollup_parts").await
    }

    async fn buckets_of(&self, table: &str) -> Result<Vec<i64>, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            partition: String,
        }
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT DISTINCT partition FROM system.parts WHERE database = currentDatabase() \
                 AND table = {} AND active",
                quote(table)
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                r.partition.trim_matches('\'').parse::<i64>().map_err(|e| {
                    ClickHouseError::Decode(format!("{table} partition {:?}: {e}", r.partition))
                })
            })
            .collect()
    }

    /// The buckets a committed compaction holds.
    pub async fn compacted_buckets(
        &self,
    ) -> Result<std::collections::BTreeSet<i64>, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            bucket: i64,
        }
        let rows: Vec<Row> = self
            .ch
            .select("SELECT DISTINCT bucket FROM usage_compactions")
            .await?;
        Ok(rows.into_iter().map(|r| r.bucket).collect())
    }

    /// The committed parts of one bucket of windows, as a compaction reads
    /// them.
    pub async fn committed_bucket_parts(
        &self,
        bucket: i64,
    ) -> Result<Vec<RollupPartRow>, ClickHouseError> {
        self.ch
            .select(&format!(
                "SELECT * FROM usage_rollup_parts \
                 WHERE intDiv(window_start, {ROLLUP_BUCKET_SECS}) = {bucket} AND {COMMITTED}"
            ))
            .await
    }

    /// Writes a bucket's compacted rows, then the row that commits them:
    /// until it is written no reader sees them, and after it no reader
    /// sees the bucket's parts.
    pub async fn commit_compaction(
        &self,
        bucket: i64,
        compaction_id: &str,
        parts: u64,
        rows: &[RollupPartRow],
    ) -> Result<(), ClickHouseError> {
        #[derive(serde::Serialize)]
        struct CompactionRow<'a> {
            bucket: i64,
            compaction_id: &'a str,
            parts: u64,
            rows: u64,
            compacted_at_us: i64,
        }
        for chunk in rows.chunks(WRITE_CHUNK_ROWS) {
            self.ch.insert("usage_rollup_compacted", chunk).await?;
        }
        self.ch
            .insert(
                "usage_compactions",
                &[CompactionRow {
                    bucket,
                    compaction_id,
                    parts,
                    rows: rows.len() as u64,
                    compacted_at_us: chrono::Utc::now().timestamp_micros(),
                }],
            )
            .await
    }

    /// Drops one bucket of rollup parts (only once it is compacted).
    pub async fn drop_rollup_bucket(&self, bucket: i64) -> Result<(), ClickHouseError> {
        self.ch
            .execute(&format!(
                "ALTER TABLE usage_rollup_parts DROP PARTITION {bucket}"
            ))
            .await
    }

    /// Records a claim of `partition` at `epoch` from offset `from`, then
    /// fences what it supersedes (see [`fences_for_claim`]). Reading the
    /// claims after inserting this one is what makes two concurrent claims
    /// safe: whichever inserted later sees the other.
    pub async fn claim(
        &self,
        partition: i32,
        epoch: u64,
        from: i64,
    ) -> Result<Claim, ClickHouseError> {
        #[derive(serde::Serialize)]
        struct ClaimRow {
            partition: i32,
            epoch: u64,
            from_offset: i64,
            claimed_at_us: i64,
        }
        #[derive(serde::Serialize, serde::Deserialize)]
        struct FenceRow {
            partition: i32,
            epoch: u64,
            fenced_from: i64,
            fenced_at_us: i64,
        }
        #[derive(serde::Deserialize)]
        struct Claimed {
            epoch: u64,
            from_offset: i64,
        }
        let now = chrono::Utc::now().timestamp_micros();
        self.ch
            .insert(
                "usage_claims",
                &[ClaimRow {
                    partition,
                    epoch,
                    from_offset: from,
                    claimed_at_us: now,
                }],
            )
            .await?;
        let claims: Vec<Claimed> = self
            .ch
            .select(&format!(
                "SELECT epoch, from_offset FROM usage_claims WHERE partition = {partition}"
            ))
            .await?;
        let fenced: Vec<FenceRow> = self
            .ch
            .select(&format!(
                "SELECT partition, epoch, min(fenced_from) AS fenced_from, max(fenced_at_us) AS fenced_at_us \
                 FROM usage_fences WHERE partition = {partition} GROUP BY partition, epoch"
            ))
            .await?;
        let claims: Vec<(u64, i64)> = claims.iter().map(|c| (c.epoch, c.from_offset)).collect();
        let fences: BTreeMap<u64, i64> = fenced.iter().map(|f| (f.epoch, f.fenced_from)).collect();
        let (write, claim) = fences_for_claim(epoch, from, &claims, &fences);
        if !write.is_empty() {
            let rows: Vec<FenceRow> = write
                .into_iter()
                .map(|(epoch, fenced_from)| FenceRow {
                    partition,
                    epoch,
                    fenced_from,
                    fenced_at_us: now,
                })
                .collect();
            self.ch.insert("usage_fences", &rows).await?;
        }
        Ok(claim)
    }

    /// Batches a later owner fenced (written, never counted): for tests and
    /// operators.
    pub async fn fenced_batches(&self) -> Result<u64, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            n: u64,
        }
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT count() AS n FROM usage_batches WHERE write_id NOT IN ({})",
                unfenced_batches!()
            ))
            .await?;
        Ok(rows.first().map_or(0, |r| r.n))
    }

    /// The last offset of `partition` that a committed batch covers.
    pub async fn last_committed_offset(
        &self,
        partition: i32,
    ) -> Result<Option<i64>, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            last_offset: i64,
        }
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT last_offset FROM usage_batches WHERE partition = {partition} AND {COMMITTED} \
                 ORDER BY last_offset DESC LIMIT 1"
            ))
            .await?;
        Ok(rows.first().map(|r| r.last_offset))
    }

    /// The committed dedupe keys of `partition` for events at or after
    /// `since_secs`, with their event times in seconds.
    pub async fn committed_keys(
        &self,
        partition: i32,
        since_secs: i64,
    ) -> Result<Vec<(DedupeKey, i64)>, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            k: String,
            t: i64,
        }
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT dedupe_key AS k, intDiv(event_time_us, 1000000) AS t FROM usage_raw \
                 WHERE partition = {partition} AND event_time_us >= {since_us} \
                 AND write_id IN ({unfenced} AND partition = {partition})",
                unfenced = unfenced_batches!(),
                since_us = since_secs.saturating_mul(1_000_000)
            ))
            .await?;
        rows.into_iter()
            .map(|r| {
                let mut key = [0u8; 16];
                hex::decode_to_slice(&r.k, &mut key)
                    .map_err(|e| ClickHouseError::Decode(format!("dedupe_key {:?}: {e}", r.k)))?;
                Ok((DedupeKey(key), r.t))
            })
            .collect()
    }

    /// Committed rollup parts of one meter for the given tenants (all
    /// tenants when `None`) with windows in `[from_secs, to_secs)`.
    pub async fn committed_parts(
        &self,
        tenants: Option<&[String]>,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> Result<Vec<RollupPartRow>, ClickHouseError> {
        let tenant_filter = match tenants {
            None => String::new(),
            Some([]) => return Ok(Vec::new()),
            Some(ts) => format!(
                " AND tenant IN ({})",
                ts.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ")
            ),
        };
        let filter = format!(
            "meter = {meter}{tenant_filter} AND window_start >= {from_secs} AND window_start < {to_secs}",
            meter = quote(meter)
        );
        self.ch
            .select(&format!("SELECT * FROM {}", committed_rollups(&filter)))
            .await
    }

    /// Committed rollups of one meter, every part of a window merged by the
    /// merge law of `dotmac_schema` (the same law the fold uses).
    pub async fn rollups(
        &self,
        tenants: Option<&[String]>,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> Result<BTreeMap<RollupKey, RollupState>, ReadError> {
        merge_parts(
            self.committed_parts(tenants, meter, from_secs, to_secs)
                .await?,
        )
    }

    /// Each tenant's committed total of one meter over windows in
    /// `[from_secs, to_secs)`: every part of every window and group merged
    /// by the merge law. ClickHouse groups the parts per tenant (one row
    /// each, not one per part), and the merge happens here on exact
    /// decimals: the period close's read.
    pub async fn tenant_totals(
        &self,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> Result<TenantTotals, ReadError> {
        let rows: Vec<TenantRow> = self
            .ch
            .select(&format!(
                "SELECT tenant, groupUniqArray(aggregation) AS aggregations, groupArray(value) AS values, \
                 sum(count) AS count, groupArray(uniques) AS uniques, groupArray(latest_time_us) AS latest_times, \
                 groupArray(latest_id) AS latest_ids \
                 FROM {rollups} GROUP BY tenant",
                rollups = committed_rollups(&format!(
                    "meter = {} AND window_start >= {from_secs} AND window_start < {to_secs}",
                    quote(meter)
                ))
            ))
            .await?;
        let mut out = TenantTotals::default();
        for row in rows {
            let tenant = row.tenant.clone();
            match Self::tenant_total(meter, row) {
                Ok(Some(total)) => {
                    out.totals.insert(tenant, total);
                }
                Ok(None) => {}
                // One tenant's unreadable or unmergeable parts fail that
                // tenant's total alone.
                Err(e) => {
                    out.failed.insert(tenant, e.to_string());
                }
            }
        }
        Ok(out)
    }

    /// One tenant's grouped parts of `meter`, merged by the merge law.
    fn tenant_total(meter: &str, row: TenantRow) -> Result<Option<RollupState>, ReadError> {
        {
            let [aggregation] = row.aggregations.as_slice() else {
                return Err(ReadError::Part(PartError(format!(
                    "meter {meter} of tenant {} has parts of several aggregations: {:?}",
                    row.tenant, row.aggregations
                ))));
            };
            let mut total: Option<RollupState> = None;
            if aggregation == "COUNT" {
                total = Some(RollupState::Count(row.count));
            } else {
                for (i, value) in row.values.into_iter().enumerate() {
                    let part = RollupPartRow {
                        tenant: String::new(),
                        meter: String::new(),
                        window_start: 0,
                        group_key: String::new(),
                        partition: 0,
                        write_id: String::new(),
                        aggregation: aggregation.clone(),
                        value,
                        count: 0,
                        uniques: row.uniques.get(i).cloned().unwrap_or_default(),
                        latest_time_us: row.latest_times.get(i).copied().unwrap_or_default(),
                        latest_id: row.latest_ids.get(i).cloned().unwrap_or_default(),
                    };
                    let state = part.state()?;
                    match &mut total {
                        Some(t) => t.merge(state).map_err(|e| {
                            ReadError::Part(PartError(format!(
                                "meter {meter} of tenant {}: {e}",
                                row.tenant
                            )))
                        })?,
                        None => total = Some(state),
                    }
                }
            }
            Ok(total)
        }
    }

    /// Event-to-queryable latency of committed events whose id starts with
    /// `id_prefix`: (count, p50, p99, max) in milliseconds.
    pub async fn latency_ms(
        &self,
        id_prefix: &str,
    ) -> Result<(u64, f64, f64, f64), ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            n: u64,
            p50: f64,
            p99: f64,
            max: f64,
        }
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT count() AS n, quantileExact(0.5)(l) / 1000 AS p50, quantileExact(0.99)(l) / 1000 AS p99, max(l) / 1000 AS max \
                 FROM (SELECT written_at_us - received_at_us AS l FROM usage_raw \
                 ANY INNER JOIN (SELECT write_id, written_at_us FROM usage_batches) USING write_id \
                 WHERE startsWith(event_id, {}))",
                quote(id_prefix)
            ))
            .await?;
        Ok(rows
            .first()
            .map_or((0, 0.0, 0.0, 0.0), |r| (r.n, r.p50, r.p99, r.max)))
    }

    /// Sums over every committed batch.
    pub async fn totals(&self) -> Result<BatchTotals, ClickHouseError> {
        let rows: Vec<BatchTotals> = self
            .ch
            .select(&format!(
                "SELECT count() AS batches, toUInt64(sum(events)) AS events, toUInt64(sum(accepted)) AS accepted, \
                 toUInt64(sum(duplicates)) AS duplicates, toUInt64(sum(dead_lettered)) AS dead_lettered \
                 FROM usage_batches WHERE {COMMITTED}"
            ))
            .await?;
        let mut totals = rows.into_iter().next().unwrap_or_default();
        totals.forwarded = totals
            .events
            .saturating_sub(totals.accepted + totals.duplicates + totals.dead_lettered);
        Ok(totals)
    }

    /// Committed raw events of `tenants` (none when empty) and one type
    /// with event times in `[from_us, to_us)`: (tenant, dedupe key,
    /// payload), for reconciliation to recompute rollups from what was
    /// accepted. Never another tenant's: a reconciliation reads what its
    /// caller may see.
    pub async fn committed_raw(
        &self,
        tenants: &[String],
        event_type: &str,
        from_us: i64,
        to_us: i64,
    ) -> Result<Vec<(String, String, String)>, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            tenant: String,
            dedupe_key: String,
            payload: String,
        }
        if tenants.is_empty() {
            return Ok(Vec::new());
        }
        let tenants: Vec<String> = tenants.iter().map(|t| quote(t)).collect();
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT tenant, dedupe_key, payload FROM usage_raw WHERE tenant IN ({tenants}) \
                 AND event_type = {t} AND event_time_us >= {from_us} AND event_time_us < {to_us} \
                 AND {COMMITTED}",
                tenants = tenants.join(", "),
                t = quote(event_type)
            ))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.tenant, r.dedupe_key, r.payload))
            .collect())
    }

    /// Committed raw events, counted: reconciliation compares this with the
    /// batch totals, and invoices recompute from these rows.
    pub async fn committed_raw_count(&self) -> Result<u64, ClickHouseError> {
        #[derive(serde::Deserialize)]
        struct Row {
            n: u64,
        }
        let rows: Vec<Row> = self
            .ch
            .select(&format!(
                "SELECT count() AS n FROM usage_raw WHERE {COMMITTED}"
            ))
            .await?;
        Ok(rows.first().map_or(0, |r| r.n))
    }
}

/// Committed parts merged per key by the merge law of `dotmac_schema` (the
/// same law the fold uses); shared with the embedded mode's store.
pub fn merge_parts(
    parts: impl IntoIterator<Item = RollupPartRow>,
) -> Result<BTreeMap<RollupKey, RollupState>, ReadError> {
    let mut merged = BTreeMap::new();
    for part in parts {
        merge_into(&mut merged, part.key()?, part.state()?)?;
    }
    Ok(merged)
}

/// `(table, column)` of an `ALTER TABLE t ADD COLUMN c ...` statement.
fn added_column(statement: &str) -> Option<(&str, &str)> {
    let mut words = statement.split_whitespace();
    let head: Vec<&str> = words.by_ref().take(5).collect();
    match head.as_slice() {
        [alter, table_kw, table, add, column_kw]
            if alter.eq_ignore_ascii_case("ALTER")
                && table_kw.eq_ignore_ascii_case("TABLE")
                && add.eq_ignore_ascii_case("ADD")
                && column_kw.eq_ignore_ascii_case("COLUMN") =>
        {
            Some((table, words.next()?))
        }
        _ => None,
    }
}

/// Splits a SQL file into statements: `;`-terminated, `--` comments dropped.
pub fn statements(sql: &str) -> Vec<String> {
    let without_comments: String = sql
        .lines()
        .map(|l| l.split("--").next().unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    without_comments
        .split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ddl_splits_into_its_statements() {
        let all: Vec<String> = MIGRATIONS.iter().flat_map(|(_, s)| statements(s)).collect();
        assert_eq!(all.len(), 8);
        // Every statement can run twice: created if missing, or a column
        // added only when absent.
        assert!(all
            .iter()
            .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS")
                || added_column(s) == Some(("usage_batches", "epoch"))));
    }

    /// Every lower epoch (and the epoch of batches from before fencing) is
    /// fenced where the new owner starts, once; a claim that finds a later
    /// one fences itself where that one starts.
    #[test]
    fn a_claim_fences_what_it_supersedes() {
        let none = BTreeMap::new();
        let (w, c) = fences_for_claim(7, 100, &[(3, 10), (7, 100)], &none);
        assert_eq!(w, vec![(0, 100), (3, 100)]);
        assert_eq!(c, Claim::Owner);
        // Already fenced lower: not again.
        let fenced = BTreeMap::from([(0, 10), (3, 50)]);
        let (w, _) = fences_for_claim(7, 100, &[(3, 10), (7, 100)], &fenced);
        assert!(w.is_empty(), "{w:?}");
        // A later claim exists: this one is fenced where it starts.
        let (w, c) = fences_for_claim(5, 80, &[(5, 80), (9, 90), (8, 95)], &fenced);
        assert_eq!(w, vec![(5, 90)]);
        assert_eq!(c, Claim::Superseded { epoch: 9, from: 90 });
    }

    #[test]
    fn only_add_column_statements_are_guarded() {
        assert_eq!(
            added_column("ALTER TABLE usage_batches ADD COLUMN epoch UInt64 DEFAULT 0"),
            Some(("usage_batches", "epoch"))
        );
        assert_eq!(added_column("CREATE TABLE IF NOT EXISTS x (a Int32)"), None);
    }

    #[test]
    fn quoting_escapes_what_could_end_a_literal() {
        assert_eq!(quote("a'b\\c"), "'a\\'b\\\\c'");
        assert_eq!(crate::clickhouse::ident("usage_raw").unwrap(), "usage_raw");
        assert!(crate::clickhouse::ident("x; DROP").is_err());
    }
}

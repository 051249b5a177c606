//! The usage pipeline as the API sees it: two ports, each with exactly two
//! implementations chosen by the wiring, so that no use case knows which
//! backend runs.
//!
//! - [`UsageSink`] takes accepted events: Kafka in `serve`
//!   ([`kafka::KafkaSink`]), the in-process log in `dev`
//!   ([`embedded::EmbeddedPipeline`]).
//! - [`UsageReader`] reads committed usage: ClickHouse in `serve`
//!   ([`clickhouse::ClickHouseReader`]), the embedded store in `dev`
//!   ([`embedded::EmbeddedPipeline`]).
//!
//! Also here: the catalog the aggregator folds by, read from the relational
//! store, and the live updates a flush announces.

pub mod catalog;
pub mod clickhouse;
pub mod embedded;
pub mod kafka;
pub mod usage_updates;

use std::collections::{BTreeMap, HashMap};

use dotmac_schema::usage::{RollupKey, RollupState};
use rust_decimal::Decimal;

use crate::error::ApiResult;

/// Where accepted usage events go.
#[async_trait::async_trait]
pub trait UsageSink: Send + Sync {
    /// Sends validated events of `tenant`; one outcome per event, in order
    /// (an error says why that event was not taken: send it again).
    async fn send_all(&self, tenant: &str, events: &[&[u8]]) -> Vec<Result<(), String>>;
}

/// Usage totals of a period per (tenant, meter), and the groups that
/// could not be totalled, with why.
#[derive(Debug, Clone, Default)]
pub struct PeriodUsage {
    pub totals: HashMap<(String, String), Decimal>,
    pub failed: BTreeMap<(String, String), String>,
}

/// One accepted raw event: (tenant, dedupe key, payload).
pub type RawEvent = (String, String, String);

/// Committed usage: what the rollups hold once a flush is durable.
#[async_trait::async_trait]
pub trait UsageReader: Send + Sync {
    /// The rollups of `meter` whose windows start in `[from_secs, to_secs)`,
    /// of `tenants` (every tenant when `None`), merged by the merge law.
    async fn rollups(
        &self,
        tenants: Option<&[String]>,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<BTreeMap<RollupKey, RollupState>>;

    /// Every tenant's total of each of `meters` over the windows starting in
    /// `[from_secs, to_secs)`, keyed by (tenant, meter), normalized (no
    /// trailing zeros); absent where a tenant has no usage. A tenant whose
    /// parts cannot be read or merged is listed in `failed` with why, and
    /// fails no other tenant's total.
    async fn meter_totals(
        &self,
        meters: &[String],
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<PeriodUsage>;

    /// Accepted raw events of `tenants` and `event_type` received in
    /// `[from_us, to_us)` (an implementation may return more of the window;
    /// callers filter by event time, never another tenant's), each once,
    /// for reconciliation.
    async fn committed_raw(
        &self,
        tenants: &[String],
        event_type: &str,
        from_us: i64,
        to_us: i64,
    ) -> ApiResult<Vec<RawEvent>>;
}

/// Merges rollups into each tenant's total, by the merge law, normalized.
pub fn totals_by_tenant(
    rollups: BTreeMap<RollupKey, RollupState>,
) -> ApiResult<BTreeMap<String, Decimal>> {
    let mut per_tenant: BTreeMap<String, RollupState> = BTreeMap::new();
    for (key, state) in rollups {
        match per_tenant.get_mut(&key.tenant) {
            Some(total) => total.merge(state).map_err(|e| {
                crate::error::ApiError::internal(format!("usage of {}: {e}", key.meter))
            })?,
            None => {
                per_tenant.insert(key.tenant, state);
            }
        }
    }
    Ok(per_tenant
        .into_iter()
        .map(|(t, s)| (t, s.value().normalize()))
        .collect())
}

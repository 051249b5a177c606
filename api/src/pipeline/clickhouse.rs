//! The production [`UsageReader`]: committed rollups and raw events in
//! ClickHouse, as the aggregator wrote them.

use std::collections::BTreeMap;

use dotmac_aggregator::store::UsageStore;
use dotmac_schema::usage::{RollupKey, RollupState};

use super::{PeriodUsage, RawEvent, UsageReader};
use crate::error::{ApiError, ApiResult};

pub struct ClickHouseReader(pub UsageStore);

fn failed(e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("clickhouse: {e}"))
}

#[async_trait::async_trait]
impl UsageReader for ClickHouseReader {
    async fn rollups(
        &self,
        tenants: Option<&[String]>,
        meter: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<BTreeMap<RollupKey, RollupState>> {
        self.0
            .rollups(tenants, meter, from_secs, to_secs)
            .await
            .map_err(failed)
    }

    async fn meter_totals(
        &self,
        meters: &[String],
        from_secs: i64,
        to_secs: i64,
    ) -> ApiResult<PeriodUsage> {
        // ClickHouse sums every tenant's parts itself.
        let read = self
            .0
            .meter_totals(meters, from_secs, to_secs)
            .await
            .map_err(failed)?;
        Ok(PeriodUsage {
            totals: read
                .by_tenant_meter
                .into_iter()
                .map(|(key, state)| (key, state.value().normalize()))
                .collect(),
            failed: read.failed,
        })
    }

    async fn committed_raw(
        &self,
        tenants: &[String],
        event_type: &str,
        from_us: i64,
        to_us: i64,
    ) -> ApiResult<Vec<RawEvent>> {
        self.0
            .committed_raw(tenants, event_type, from_us, to_us)
            .await
            .map_err(failed)
    }
}

//! Per-tenant totals of several meters over a time range, summed exactly
//! inside ClickHouse: the period close's read. Part values are decimal text;
//! ClickHouse adds them as `Decimal128(18)` only where that is provably
//! exact (every value within 20 integer and 18 fraction digits, and the sum
//! unable to overflow), and says per group whether it was. Groups it cannot
//! add exactly (a value out of that range, or a UNIQUE_COUNT or LATEST
//! meter) are merged here from their parts by the schema's merge law, so
//! the answer is always the exact merge of every committed part.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::str::FromStr;

use dotmac_schema::usage::RollupState;
use rust_decimal::Decimal;

use crate::clickhouse::quote;
use crate::rows::PartError;
use crate::store::{committed_rollups, ReadError, UsageStore};

/// Digits `Decimal128(18)` holds left of the point.
const INTEGER_DIGITS: u32 = 20;
/// Digits it holds right of the point.
const FRACTION_DIGITS: u32 = 18;

/// One tenant's and meter's total.
pub type TotalsByTenantMeter = HashMap<(String, String), RollupState>;

/// What [`UsageStore::meter_totals`] read.
#[derive(Debug, Default)]
pub struct MeterTotals {
    pub by_tenant_meter: TotalsByTenantMeter,
    /// Meters some of whose groups ClickHouse could not add exactly, so
    /// they were merged here from their parts.
    pub merged_here: BTreeSet<String>,
    /// (tenant, meter) groups whose parts could not be read or merged,
    /// with why: absent from `by_tenant_meter`, and failing no one else.
    pub failed: BTreeMap<(String, String), String>,
}

/// The per-part facts the exactness guard needs, computed in ClickHouse:
/// `exact` (the text is a plain decimal within `Decimal128(18)`'s digits:
/// ClickHouse would otherwise parse a prefix of it, or refuse it), `digits`
/// (its integer digits, a sign counted as one), and `d` (the value as a
/// decimal, 0 where not exact, so the conversion only sees text it reads
/// whole). COUNT and UNIQUE_COUNT parts have no value (and `d` 0).
fn guarded_parts(meters: &str, from_secs: i64, to_secs: i64) -> String {
    format!(
        "SELECT tenant, meter, aggregation, count, position(value, '.') AS dot, \
         if(dot = 0, toInt64(length(value)), toInt64(dot) - 1) AS digits, \
         match(value, '^-?[0-9]{{1,{INTEGER_DIGITS}}}(\\\\.[0-9]{{1,{FRACTION_DIGITS}}})?$') AS exact, \
         toDecimal128(if(exact, value, '0'), {FRACTION_DIGITS}) AS d \
         FROM {rollups}",
        rollups = committed_rollups(&format!(
            "meter IN ({meters}) AND window_start >= {from_secs} AND window_start < {to_secs}"
        ))
    )
}

#[derive(serde::Deserialize)]
struct GroupRow {
    tenant: String,
    meter: String,
    /// The least and the greatest aggregation among the group's parts:
    /// equal unless parts disagree (cheaper than collecting the set).
    agg_min: String,
    agg_max: String,
    #[serde(deserialize_with = "number")]
    parts: u64,
    #[serde(deserialize_with = "number")]
    count: u64,
    #[serde(deserialize_with = "number")]
    inexact: u64,
    #[serde(deserialize_with = "number")]
    digits: i64,
    /// Present in the sum query.
    #[serde(default)]
    sum: Option<String>,
    /// Present in the min/max query.
    #[serde(default)]
    min: Option<String>,
    #[serde(default)]
    max: Option<String>,
}

/// ClickHouse writes 64-bit integers in JSON as strings; smaller ones as
/// numbers. Read either without buffering (this runs for every group).
fn number<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: FromStr + TryFrom<i64> + TryFrom<u64>,
    <T as FromStr>::Err: std::fmt::Display,
{
    struct Number<T>(std::marker::PhantomData<T>);
    impl<T> serde::de::Visitor<'_> for Number<T>
    where
        T: FromStr + TryFrom<i64> + TryFrom<u64>,
        <T as FromStr>::Err: std::fmt::Display,
    {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer, or one as a string")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }
    }
    d.deserialize_any(Number(std::marker::PhantomData))
}

impl GroupRow {
    /// Whether ClickHouse's decimal aggregate of this group is exact: no
    /// part out of range, and `parts` values below 10^digits each cannot
    /// reach 10^20.
    fn exact(&self) -> bool {
        let parts_digits = self.parts.max(1).ilog10() + 1;
        self.inexact == 0
            && u32::try_from(self.digits)
                .is_ok_and(|d| d.saturating_add(parts_digits) <= INTEGER_DIGITS)
    }

    fn aggregation(&self) -> Result<&str, PartError> {
        if self.agg_min == self.agg_max {
            Ok(&self.agg_min)
        } else {
            Err(PartError(format!(
                "meter {} of tenant {} has parts of several aggregations: {} and {}",
                self.meter, self.tenant, self.agg_min, self.agg_max
            )))
        }
    }
}

/// A `Decimal128(18)` as ClickHouse prints it, exactly, or None when it
/// does not fit a `Decimal` (28 digits) without rounding.
fn exact_decimal(text: Option<&str>) -> Option<Decimal> {
    let text = text?;
    let trimmed = match text.find('.') {
        Some(_) => text.trim_end_matches('0').trim_end_matches('.'),
        None => text,
    };
    Decimal::from_str_exact(trimmed).ok().map(|d| d.normalize())
}

/// Keeps a group's total read from ClickHouse, or marks its meter to be
/// merged here when ClickHouse's answer was not provably exact.
fn keep(
    out: &mut TotalsByTenantMeter,
    merge_here: &mut BTreeSet<String>,
    row: GroupRow,
    state: Option<RollupState>,
) {
    match state {
        Some(state) => {
            out.insert((row.tenant, row.meter), state);
        }
        None => {
            merge_here.insert(row.meter);
        }
    }
}

impl UsageStore {
    /// Each tenant's committed total of every meter in `meters` over
    /// windows in `[from_secs, to_secs)`, merged by each meter's merge law;
    /// a tenant without parts of a meter is absent.
    pub async fn meter_totals(
        &self,
        meters: &[String],
        from_secs: i64,
        to_secs: i64,
    ) -> Result<MeterTotals, ReadError> {
        let mut out = TotalsByTenantMeter::new();
        if meters.is_empty() {
            return Ok(MeterTotals::default());
        }
        let started = std::time::Instant::now();
        let sums = self
            .groups(meters, "toString(sum(d)) AS sum", from_secs, to_secs)
            .await;
        let sums = match sums {
            Ok(rows) => rows,
            Err(e) => {
                // Text the guard let through but ClickHouse would not
                // convert: the parts' own merge is always possible.
                tracing::warn!(error = %e, "summing in ClickHouse failed; merging parts instead");
                let (by_tenant_meter, failed) =
                    self.merged_here(meters, from_secs, to_secs).await?;
                return Ok(MeterTotals {
                    by_tenant_meter,
                    merged_here: meters.iter().cloned().collect(),
                    failed,
                });
            }
        };
        tracing::debug!(
            ms = started.elapsed().as_millis(),
            groups = sums.len(),
            from_secs,
            "sums read"
        );
        let mut extremes: BTreeSet<String> = BTreeSet::new();
        let mut merge_here: BTreeSet<String> = BTreeSet::new();
        let mut failed = BTreeMap::new();
        for row in sums {
            let aggregation = match row.aggregation() {
                Ok(a) => a,
                Err(e) => {
                    failed.insert((row.tenant.clone(), row.meter.clone()), e.to_string());
                    continue;
                }
            };
            let state = match aggregation {
                "COUNT" => Some(RollupState::Count(row.count)),
                "SUM" if row.exact() => exact_decimal(row.sum.as_deref()).map(RollupState::Sum),
                "MIN" | "MAX" => {
                    extremes.insert(row.meter.clone());
                    continue;
                }
                _ => None,
            };
            keep(&mut out, &mut merge_here, row, state);
        }
        if !extremes.is_empty() {
            let extremes: Vec<String> = extremes.into_iter().collect();
            let totals = "toString(min(d)) AS min, toString(max(d)) AS max";
            let rows = match self.groups(&extremes, totals, from_secs, to_secs).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "MIN/MAX in ClickHouse failed; merging parts instead");
                    merge_here.extend(extremes);
                    Vec::new()
                }
            };
            for row in rows {
                let aggregation = match row.aggregation() {
                    Ok(a) => a,
                    Err(e) => {
                        failed.insert((row.tenant.clone(), row.meter.clone()), e.to_string());
                        continue;
                    }
                };
                let state = match aggregation {
                    "MIN" if row.inexact == 0 => {
                        exact_decimal(row.min.as_deref()).map(RollupState::Min)
                    }
                    "MAX" if row.inexact == 0 => {
                        exact_decimal(row.max.as_deref()).map(RollupState::Max)
                    }
                    _ => None,
                };
                keep(&mut out, &mut merge_here, row, state);
            }
        }
        let listed: Vec<String> = merge_here.iter().cloned().collect();
        let (merged, merge_failed) = self.merged_here(&listed, from_secs, to_secs).await?;
        out.extend(merged);
        for (key, why) in merge_failed {
            // A group ClickHouse added already keeps its total.
            if !out.contains_key(&key) {
                failed.insert(key, why);
            }
        }
        Ok(MeterTotals {
            by_tenant_meter: out,
            merged_here: merge_here,
            failed,
        })
    }

    /// Each (tenant, meter) group of `meters`' parts with the guard's
    /// facts and `totals` (aggregates of the guarded decimal `d`).
    async fn groups(
        &self,
        meters: &[String],
        totals: &str,
        from_secs: i64,
        to_secs: i64,
    ) -> Result<Vec<GroupRow>, crate::clickhouse::ClickHouseError> {
        let listed = meters
            .iter()
            .map(|m| quote(m))
            .collect::<Vec<_>>()
            .join(", ");
        self.clickhouse()
            .select::<GroupRow>(&format!(
                "SELECT tenant, meter, min(aggregation) AS agg_min, max(aggregation) AS agg_max, \
                 count() AS parts, sum(count) AS count, countIf(NOT exact) AS inexact, \
                 max(digits) AS digits, {totals} FROM ({}) GROUP BY tenant, meter",
                guarded_parts(&listed, from_secs, to_secs)
            ))
            .await
    }

    /// [`Self::meter_totals`] by merging every part here, meter by meter.
    async fn merged_here(
        &self,
        meters: &[String],
        from_secs: i64,
        to_secs: i64,
    ) -> Result<(TotalsByTenantMeter, BTreeMap<(String, String), String>), ReadError> {
        let mut out = TotalsByTenantMeter::new();
        let mut failed = BTreeMap::new();
        for meter in meters {
            let read = self.tenant_totals(meter, from_secs, to_secs).await?;
            for (tenant, state) in read.totals {
                out.insert((tenant, meter.clone()), state);
            }
            for (tenant, why) in read.failed {
                failed.insert((tenant, meter.clone()), why);
            }
        }
        Ok((out, failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(parts: u64, inexact: u64, digits: i64) -> GroupRow {
        GroupRow {
            tenant: "t".into(),
            meter: "m".into(),
            agg_min: "SUM".into(),
            agg_max: "SUM".into(),
            parts,
            count: 0,
            inexact,
            digits,
            sum: None,
            min: None,
            max: None,
        }
    }

    #[test]
    fn groups_read_as_clickhouse_writes_them() {
        // 64-bit integers come as strings in JSONEachRow.
        let line = r#"{"tenant":"t","meter":"m","agg_min":"SUM","agg_max":"SUM","parts":"30","count":"0","inexact":"0","digits":"3","sum":"24298.500000000000000000"}"#;
        let row: GroupRow = serde_json::from_str(line).unwrap();
        assert_eq!(
            (row.parts, row.count, row.inexact, row.digits),
            (30, 0, 0, 3)
        );
        assert!(row.exact());
        let negative = line.replace(r#""digits":"3""#, r#""digits":-1"#);
        assert_eq!(
            serde_json::from_str::<GroupRow>(&negative).unwrap().digits,
            -1
        );
    }

    #[test]
    fn a_sum_is_trusted_only_when_it_cannot_overflow() {
        // 9 parts below 10^19 each stay below 10^20.
        assert!(group(9, 0, 19).exact());
        // 10 of them might not.
        assert!(!group(10, 0, 19).exact());
        // 999 parts below 10^17 stay below 10^20; 1,000 are not proven to.
        assert!(group(999, 0, 17).exact());
        assert!(!group(1_000, 0, 17).exact());
        // One part ClickHouse could not hold exactly spoils the group.
        assert!(!group(2, 1, 1).exact());
    }

    #[test]
    fn decimals_come_back_exactly_or_not_at_all() {
        assert_eq!(
            exact_decimal(Some("24298.500000000000000000")),
            Some(Decimal::new(242_985, 1))
        );
        assert_eq!(
            exact_decimal(Some("0.000000000000000000")),
            Some(Decimal::ZERO)
        );
        assert_eq!(exact_decimal(Some("-3")), Some(Decimal::from(-3)));
        assert_eq!(
            exact_decimal(Some("100.000000000000000000")),
            Some(Decimal::from(100))
        );
        // 20 + 18 significant digits do not fit in 28: refused, not rounded.
        assert_eq!(
            exact_decimal(Some("12345678901234567890.123456789012345678")),
            None
        );
        assert_eq!(exact_decimal(None), None);
    }

    proptest::proptest! {
        /// Any decimal ClickHouse can hold comes back exactly from the way
        /// it prints a `Decimal128(18)`: padded to 18 places.
        #[test]
        fn printed_decimals_come_back_exactly(
            mantissa in proptest::num::i64::ANY,
            scale in 0u32..=18,
        ) {
            let d = Decimal::new(mantissa, scale);
            // Padded to 18 places, as ClickHouse prints Decimal128(18).
            let plain = d.to_string();
            let places = plain.split_once('.').map_or(0, |(_, f)| f.len());
            let printed = match places {
                0 => format!("{plain}.{}", "0".repeat(18)),
                n => format!("{plain}{}", "0".repeat(18 - n)),
            };
            proptest::prop_assert_eq!(exact_decimal(Some(&printed)), Some(d.normalize()));
        }
    }
}

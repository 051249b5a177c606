//! What a close reads besides the subscriptions: every tenant's committed
//! usage per distinct period, and the invoices that exist already (drafts to
//! rewrite, settled ones to adjust against), each read once.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, Utc};
use dotmac_billing::{Period, UsageTotals};
use dotmac_schema::price::PlanVersion;
use sea_orm::{EntityTrait, QuerySelect};

use super::book::Due;
use crate::error::{ApiError, ApiResult};
use crate::pipeline::PeriodUsage;
use crate::service::billing::periods::{usage_by_tenant, usage_totals};
use crate::service::billing::taxes::Jurisdictions;
use crate::service::billing::Billing;
use crate::store::billing_rows::{self as rows, InvoiceRow};

/// Every tenant's committed usage of the priced meters, per period: one
/// read per distinct period (the month's and the one before), whatever the
/// number of tenants.
pub(super) struct Usage(HashMap<Period, PeriodUsage>);

impl Usage {
    pub(super) async fn read(billing: &Billing, due: &[Due]) -> ApiResult<Usage> {
        let mut wanted: BTreeMap<Period, BTreeSet<String>> = BTreeMap::new();
        for d in due {
            for period in [d.period, d.previous] {
                wanted
                    .entry(period)
                    .or_default()
                    .extend(d.meters().cloned());
            }
        }
        let reads = wanted.into_iter().map(|(period, meters)| async move {
            let meters: Vec<String> = meters.into_iter().collect();
            let totals =
                usage_totals(billing, &meters, period.start_time(), period.end_time()).await?;
            Ok::<_, ApiError>((period, totals))
        });
        Ok(Usage(
            futures::future::try_join_all(reads)
                .await?
                .into_iter()
                .collect(),
        ))
    }

    /// `d`'s tenant's usage of its plan's meters over `[from, to)` inside
    /// `period`: the period's totals when that is the whole period, else
    /// read for the window (a trial's end or a cancellation inside it).
    pub(super) async fn while_running(
        &self,
        billing: &Billing,
        d: &Due,
        period: Period,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ApiResult<UsageTotals> {
        let tenant = &d.sub.tenant_id;
        let mut counted = self.totals(period, tenant, &d.plan)?;
        if from > period.start_time() || to < period.end_time() {
            for (meter, q) in counted.iter_mut() {
                *q = usage_by_tenant(billing, Some(std::slice::from_ref(tenant)), meter, from, to)
                    .await?
                    .remove(tenant)
                    .unwrap_or_default();
            }
        }
        Ok(counted)
    }

    /// `tenant`'s usage of each of `plan`'s meters over `period`, or why
    /// one of them could not be totalled.
    pub(super) fn totals(
        &self,
        period: Period,
        tenant: &str,
        plan: &PlanVersion,
    ) -> ApiResult<UsageTotals> {
        let of_period = self.0.get(&period);
        plan.prices
            .iter()
            .filter_map(|p| p.meter.clone())
            .map(|m| {
                let key = (tenant.to_owned(), m.clone());
                if let Some(why) = of_period.and_then(|u| u.failed.get(&key)) {
                    return Err(ApiError::internal(format!(
                        "usage of {m} from {} to {}: {why}",
                        period.start, period.end
                    )));
                }
                let q = of_period
                    .and_then(|u| u.totals.get(&key))
                    .copied()
                    .unwrap_or_default();
                Ok((m, q))
            })
            .collect()
    }
}

/// What exists already, read once rather than per subscription.
pub(super) struct Known {
    /// The month's drafts by (subscription, period start).
    pub(super) drafts: HashMap<(String, String), InvoiceRow>,
    /// The month's invoices past draft: they stay as they are.
    pub(super) done: HashSet<(String, String)>,
    /// Invoices past draft of the previous periods, per subscription: what
    /// adjustments compare with (only an invoice of the closed period
    /// could also carry adjustments for the previous one, and a close
    /// leaves that invoice alone once it is past draft).
    pub(super) settled: HashMap<String, Vec<InvoiceRow>>,
    /// Per subscription with a coupon, the periods it already discounted.
    pub(super) discounted: HashMap<String, BTreeSet<String>>,
    /// Each tenant's reseller, for the finalization events.
    pub(super) resellers: HashMap<String, Option<String>>,
    /// Tenants' tax jurisdictions and their rates.
    pub(super) jurisdictions: Jurisdictions,
}

impl Known {
    pub(super) async fn read(billing: &Billing, due: &[Due]) -> ApiResult<Known> {
        let starts: BTreeSet<String> = due.iter().map(|d| d.period.start.to_string()).collect();
        let previous: BTreeSet<String> = due.iter().map(|d| d.previous.start.to_string()).collect();
        let with_coupon: Vec<String> = due
            .iter()
            .filter(|d| d.coupon.is_some())
            .map(|d| d.sub.id.clone())
            .collect();
        let tx = billing.store.begin_system().await?;
        let drafts = rows::drafts_starting(&tx, &starts)
            .await?
            .into_iter()
            .map(|row| ((row.subscription_id.clone(), row.period_start.clone()), row))
            .collect();
        let done = rows::settled_keys_starting(&tx, &starts)
            .await?
            .into_iter()
            .collect();
        let mut settled: HashMap<String, Vec<InvoiceRow>> = HashMap::new();
        for row in rows::settled_invoices_starting(&tx, &previous).await? {
            settled
                .entry(row.subscription_id.clone())
                .or_default()
                .push(row);
        }
        let mut discounted: HashMap<String, BTreeSet<String>> = HashMap::new();
        for (sub, start) in rows::discounted_periods(&tx, &with_coupon).await? {
            discounted.entry(sub).or_default().insert(start);
        }
        use crate::store::entity::tenant;
        let mut resellers = HashMap::new();
        let mut of_tenant = HashMap::new();
        for (id, reseller, jurisdiction) in tenant::Entity::find()
            .select_only()
            .columns([
                tenant::Column::Id,
                tenant::Column::ResellerId,
                tenant::Column::TaxJurisdiction,
            ])
            .into_tuple::<(String, Option<String>, Option<String>)>()
            .all(&tx)
            .await?
        {
            if let Some(code) = jurisdiction {
                of_tenant.insert(id.clone(), code);
            }
            resellers.insert(id, reseller);
        }
        let rates = crate::store::tax_rate_rows::all(&tx).await?;
        tx.commit().await?;
        Ok(Known {
            drafts,
            done,
            settled,
            discounted,
            resellers,
            jurisdictions: Jurisdictions { of_tenant, rates },
        })
    }
}

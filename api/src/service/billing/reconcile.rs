//! Reconciliation of a month: per tenant and meter, the quantity invoiced
//! for the period starting in that month (its usage line and every later
//! adjustment naming it) against the committed rollups and against the raw
//! deduplicated events refolded by the meter's definition. Every
//! discrepancy is listed with its cause; a clean month lists none.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, NaiveDate, Utc};
use dotmac_billing::period::Calendar;
use dotmac_billing::{billed_quantities, Period};
use dotmac_schema::usage::{fold, Meter, RollupState, UsageEvent};
use dotmac_schema::{InvoiceStatus, Role, Scope};
use rust_decimal::Decimal;
use sea_orm::EntityTrait;

use super::periods::usage_by_tenant;
use super::Billing;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::store::billing_rows as rows;
use crate::store::entity::meter;

/// One tenant and meter of the month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconRow {
    pub tenant_id: String,
    pub meter: String,
    pub period: Period,
    /// None when no invoice exists for the period.
    pub invoiced: Option<Decimal>,
    pub invoice_status: Option<InvoiceStatus>,
    pub rollups: Decimal,
    pub raw: Decimal,
    /// Why the figures differ; empty when they agree.
    pub causes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconReport {
    pub rows: Vec<ReconRow>,
}

impl ReconReport {
    pub fn discrepancies(&self) -> usize {
        self.rows.iter().filter(|r| !r.causes.is_empty()).count()
    }
}

/// Raw accepted events of `tenants` and one meter's type in `[from, to)`,
/// refolded by its definition: each tenant's total, or why its events
/// cannot be totalled (that tenant's row says so; the others are
/// reconciled).
async fn raw_totals(
    billing: &Billing,
    tenants: &[String],
    def: &Meter,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, Result<Decimal, String>>> {
    let raw = billing
        .usage
        .committed_raw(
            tenants,
            &def.event_type,
            from.timestamp_micros(),
            to.timestamp_micros(),
        )
        .await?;
    let mut by_tenant: BTreeMap<String, Vec<UsageEvent>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (tenant, key, payload) in raw {
        let Ok(event) = UsageEvent::decode(payload.as_bytes()) else {
            continue;
        };
        if event.time < from || event.time >= to || !seen.insert(key) {
            continue;
        }
        by_tenant.entry(tenant).or_default().push(event);
    }
    let mut out = BTreeMap::new();
    for (tenant, events) in by_tenant {
        let total = refold(&tenant, def, &events).map_err(|e| e.to_string());
        out.insert(tenant, total);
    }
    Ok(out)
}

/// One tenant's events folded and merged into one total.
fn refold(
    tenant: &str,
    def: &Meter,
    events: &[UsageEvent],
) -> Result<Decimal, dotmac_schema::usage::RollupError> {
    let mut total: Option<RollupState> = None;
    for state in fold(tenant, def, events)?.into_values() {
        match &mut total {
            Some(t) => t.merge(state)?,
            None => total = Some(state),
        }
    }
    Ok(total.map_or(Decimal::ZERO, |t| t.value()))
}

/// Reconciles `month` (`YYYY-MM`) for the caller's tenants (GraphQL's path;
/// the CLI calls [`reconcile`] for the whole platform). It refolds raw
/// events and shows invoiced quantities: platform staff and a tenant's
/// admin may, read-only members and resellers (who see invoice summaries,
/// not lines) may not.
pub async fn reconcile_as(
    billing: &Billing,
    ctx: &RequestCtx,
    month: &str,
) -> ApiResult<ReconReport> {
    let p = ctx.principal()?;
    if !matches!(
        p.role(),
        Some(Role::PlatformAdmin | Role::Support | Role::TenantAdmin)
    ) {
        return Err(ApiError::Forbidden(
            "reconciliation is for platform staff and tenant admins".into(),
        ));
    }
    let first = super::periods::parse_month("month", month)?;
    reconcile(billing, &p.scope, first).await
}

/// Reconciles the periods starting in `month` for the tenants in `scope`.
pub async fn reconcile(
    billing: &Billing,
    scope: &Scope,
    month: NaiveDate,
) -> ApiResult<ReconReport> {
    let tx = billing.store.begin(scope).await?;
    let subs = rows::subscriptions_in(&tx, scope).await?;
    let plans = rows::all_plans(&tx).await?;
    let meters: BTreeMap<String, Meter> = meter::Entity::find()
        .all(&tx)
        .await?
        .iter()
        .map(|m| Ok((m.slug.clone(), crate::store::meter_rows::definition(m)?)))
        .collect::<ApiResult<_>>()?;
    tx.commit().await?;
    // Every read below is of the tenants in scope only.
    let tenants: Vec<String> = subs
        .iter()
        .map(|s| s.tenant_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut report = ReconReport::default();
    let mut usage_cache: BTreeMap<(Period, String), BTreeMap<String, Decimal>> = BTreeMap::new();
    let mut raw_cache: BTreeMap<(Period, String), BTreeMap<String, Result<Decimal, String>>> =
        BTreeMap::new();
    for sub in &subs {
        let Some(plan_row) = plans.iter().find(|p| p.id == sub.plan_id) else {
            continue;
        };
        let plan = rows::plan_version(plan_row)?;
        let calendar = Calendar::new(rows::anchor(sub)?, plan.interval);
        let Some(period) = calendar.period_starting_in(month) else {
            continue;
        };
        let tx = billing.store.begin(scope).await?;
        let invoice = rows::invoice_for(&tx, &sub.id, period.start).await?;
        let finalized = rows::billed_invoices(&tx, &sub.id).await?;
        tx.commit().await?;
        let mut kinds = Vec::new();
        // A void invoice bills nothing: its lines count for nothing.
        if let Some(inv) = invoice.as_ref().filter(|i| i.status != InvoiceStatus::Void) {
            kinds.extend(rows::lines(inv)?.into_iter().map(|l| l.kind));
        }
        for other in finalized
            .iter()
            .filter(|f| Some(&f.id) != invoice.as_ref().map(|i| &i.id))
        {
            kinds.extend(rows::lines(other)?.into_iter().map(|l| l.kind));
        }
        let billed = billed_quantities(kinds.iter(), &period);
        for m in plan.prices.iter().filter_map(|p| p.meter.clone()) {
            let key = (period, m.clone());
            if !usage_cache.contains_key(&key) {
                // The platform reads every tenant, each totalled on its own.
                let of = (!matches!(scope, Scope::All)).then_some(tenants.as_slice());
                let u = usage_by_tenant(billing, of, &m, period.start_time(), period.end_time())
                    .await?;
                usage_cache.insert(key.clone(), u);
                let r = match meters.get(&m) {
                    Some(def) => {
                        raw_totals(
                            billing,
                            &tenants,
                            def,
                            period.start_time(),
                            period.end_time(),
                        )
                        .await?
                    }
                    None => BTreeMap::new(),
                };
                raw_cache.insert(key.clone(), r);
            }
            let rollups = usage_cache[&key]
                .get(&sub.tenant_id)
                .copied()
                .unwrap_or_default();
            let (raw, unreadable) = match raw_cache[&key].get(&sub.tenant_id) {
                Some(Ok(total)) => (*total, None),
                Some(Err(why)) => (Decimal::ZERO, Some(why.clone())),
                None => (Decimal::ZERO, None),
            };
            let invoiced = invoice
                .as_ref()
                .map(|_| billed.get(&m).copied().unwrap_or_default());
            let mut causes = Vec::new();
            if let Some(why) = unreadable {
                causes.push(format!(
                    "the raw events cannot be refolded ({why}): this tenant's usage is beyond the platform's limits"
                ));
            } else if !meters.contains_key(&m) {
                causes.push(format!(
                    "the plan prices meter {m:?}, which does not exist: its raw events cannot be refolded"
                ));
            } else if rollups != raw {
                causes.push(format!(
                    "rollups ({rollups}) differ from the raw deduplicated events ({raw}): a committed part without its events, or a fold defect"
                ));
            }
            let partial = sub.trial_ends_at.is_some_and(|t| t > period.start_time())
                || sub.cancelled_at.is_some_and(|c| c < period.end_time());
            match (&invoice, invoiced) {
                (None, _) => causes.push(
                    "not invoiced: the period is not closed yet, or the subscription was in its trial"
                        .into(),
                ),
                (Some(inv), Some(q)) if q != rollups => {
                    let why = if inv.status == InvoiceStatus::Void {
                        "the invoice was voided: it bills nothing"
                    } else if partial {
                        "usage outside the billed span (trial or cancellation) is not invoiced"
                    } else if inv.status == InvoiceStatus::Draft {
                        "the invoice is a draft: the next close re-rates it"
                    } else if rollups > q {
                        "late usage after finalization: the next invoice's close adds an adjustment"
                    } else {
                        "usage fell after finalization: never refunded by the close; the close report lists it for a platform credit note"
                    };
                    causes.push(format!("invoiced {q}, rollups {rollups}: {why}"));
                }
                _ => {}
            }
            report.rows.push(ReconRow {
                tenant_id: sub.tenant_id.clone(),
                meter: m,
                period,
                invoiced,
                invoice_status: invoice.as_ref().map(|i| i.status),
                rollups,
                raw,
                causes,
            });
        }
    }
    Ok(report)
}

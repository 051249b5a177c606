//! Billing use cases: plans, subscriptions, the usage a close reads, and
//! billing on a schedule. The period close itself is in [`super::close`]
//! (re-exported here).

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use dotmac_billing::period::Calendar;
use dotmac_billing::Period;
use dotmac_schema::price::PlanVersion;
use dotmac_schema::usage::RollupState;
use rust_decimal::Decimal;

use dotmac_schema::{InvoiceId, PlanId, Role, SubscriptionId, TenantId};

use super::{parse_id, required_text};
use crate::app::{App, RequestCtx};
use crate::error::{ApiError, ApiResult};
use crate::store::audit::{self, AuditEntry};
use crate::store::billing::{self as rows, InvoiceRow, PlanRow, SubscriptionRow};

pub use super::close::{
    activate_ended_trials, close_as, close_period, close_period_in_chunks, CloseReport,
    CloseRequest,
};

/// Days from finalization to the due date (DESIGN.md §8).
pub const NET_DAYS: i64 = 30;

/// Adds a plan version to the catalogue (platform admins).
pub async fn create_plan(
    app: &App,
    ctx: &RequestCtx,
    name: &str,
    plan: PlanVersion,
) -> ApiResult<PlanRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let name = required_text("input.name", name, 200)?;
    plan.validate()
        .map_err(|e| ApiError::validation(format!("input.{}", e.field), e.reason))?;
    let row = rows::plan_row(PlanId::new().to_string(), name, &plan, app.clock.now())?;
    let tx = app.store.begin(&p.scope).await?;
    let row = rows::insert_plan(&tx, row).await?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "plan.create",
            object_id: Some(row.id.clone()),
            after: Some(format!("{}:v{}:{}", row.slug, row.version, row.currency)),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// Subscribes a tenant to a plan version (platform admins). Billing periods
/// start on `anchor` (default: today); the plan's trial runs from now.
pub async fn subscribe(
    app: &App,
    ctx: &RequestCtx,
    tenant_id: &str,
    plan_id: &str,
    anchor: Option<NaiveDate>,
    terms: SubscriptionTerms,
) -> ApiResult<SubscriptionRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    terms.validate()?;
    let tenant: TenantId = parse_id("input.tenantId", tenant_id)?;
    let now = app.clock.now();
    let tx = app.store.begin(&p.scope).await?;
    crate::store::tenants::get(&tx, &p.scope, &tenant).await?;
    let plan_id: PlanId = parse_id("input.planId", plan_id)?;
    let plan_row = rows::get_plan(&tx, plan_id.as_str()).await?;
    let plan = rows::plan_version(&plan_row)?;
    let trial_ends_at =
        (plan.trial_days > 0).then(|| now + TimeDelta::days(i64::from(plan.trial_days)));
    let row = SubscriptionRow {
        id: SubscriptionId::new().to_string(),
        tenant_id: tenant.to_string(),
        plan_id: plan_row.id.clone(),
        state: if trial_ends_at.is_some() {
            "trial"
        } else {
            "active"
        }
        .into(),
        anchor_date: anchor.unwrap_or(now.date_naive()).to_string(),
        trial_ends_at,
        cancel_at_period_end: false,
        cancelled_at: None,
        created_at: now,
        updated_at: now,
        tax: json(&terms.tax)?,
        coupon: json(&terms.coupon)?,
    };
    let row = rows::insert_subscription(&tx, row).await?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "subscription.create",
            tenant_id: Some(row.tenant_id.clone()),
            object_id: Some(row.id.clone()),
            after: Some(format!("{}:v{}", plan.plan, plan.version)),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// What a subscription adds to its plan: a tax rate of its own (else its
/// tenant's jurisdiction's applies) and a coupon.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionTerms {
    pub tax: Option<dotmac_billing::TaxRate>,
    pub coupon: Option<dotmac_billing::Coupon>,
}

impl SubscriptionTerms {
    fn validate(&self) -> ApiResult<()> {
        if let Some(t) = &self.tax {
            required_text("input.tax.name", &t.name, 100)?;
            if t.percent < Decimal::ZERO || t.percent > Decimal::ONE_HUNDRED {
                return Err(ApiError::validation(
                    "input.tax.percent",
                    "must be 0 to 100",
                ));
            }
        }
        if let Some(c) = &self.coupon {
            required_text("input.coupon.code", &c.code, 100)?;
            match c.discount {
                dotmac_billing::Discount::Percent(p)
                    if p <= Decimal::ZERO || p > Decimal::ONE_HUNDRED =>
                {
                    return Err(ApiError::validation(
                        "input.coupon.percentOff",
                        "must be more than 0 and at most 100",
                    ))
                }
                dotmac_billing::Discount::Fixed(a) if a <= Decimal::ZERO => {
                    return Err(ApiError::validation(
                        "input.coupon.amountOff",
                        "must be greater than 0",
                    ))
                }
                _ => {}
            }
            if c.duration == dotmac_billing::CouponDuration::Periods(0) {
                return Err(ApiError::validation(
                    "input.coupon.periods",
                    "must be at least 1 (omit for forever)",
                ));
            }
        }
        Ok(())
    }
}

/// A subscription row's state.
fn stored_state(sub: &SubscriptionRow) -> ApiResult<dotmac_billing::SubscriptionState> {
    dotmac_billing::SubscriptionState::parse(&sub.state)
        .ok_or_else(|| ApiError::internal(format!("unknown subscription state {:?}", sub.state)))
}

fn json<T: serde::Serialize>(v: &Option<T>) -> ApiResult<Option<String>> {
    v.as_ref()
        .map(|v| serde_json::to_string(v).map_err(|e| ApiError::internal(e.to_string())))
        .transpose()
}

/// Moves a live subscription to another plan version now (platform
/// admins). The period's recurring fees are prorated between the plans by
/// time in force; usage is rated under the plan in force at the close.
pub async fn change_plan(
    app: &App,
    ctx: &RequestCtx,
    subscription_id: &str,
    plan_id: &str,
) -> ApiResult<SubscriptionRow> {
    ctx.writer_with(&[Role::PlatformAdmin])?;
    let pid: PlanId = parse_id("planId", plan_id)?;
    let (tx, mut sub) = open_subscription(app, ctx, "subscriptionId", subscription_id).await?;
    let now = app.clock.now();
    if sub.state == "cancelled" {
        return Err(ApiError::conflict(
            "subscriptionId",
            "the subscription is cancelled",
        ));
    }
    let from = rows::plan_version(&rows::get_plan(&tx, &sub.plan_id).await?)?;
    let to = rows::plan_version(&rows::get_plan(&tx, pid.as_str()).await?)?;
    if sub.plan_id == pid.as_str() {
        return Err(ApiError::conflict(
            "planId",
            "the subscription is on this plan already",
        ));
    }
    if (from.currency, from.interval) != (to.currency, to.interval) {
        return Err(ApiError::validation(
            "planId",
            "a plan change keeps the currency and the billing interval",
        ));
    }
    rows::insert_plan_change(
        &tx,
        rows::PlanChangeRow {
            id: format!("pch_{}", uuid::Uuid::now_v7().simple()),
            tenant_id: sub.tenant_id.clone(),
            subscription_id: sub.id.clone(),
            from_plan_id: sub.plan_id.clone(),
            to_plan_id: pid.to_string(),
            changed_at: now,
        },
    )
    .await?;
    let before = sub.plan_id.clone();
    sub.plan_id = pid.to_string();
    sub.updated_at = now;
    let after = sub.plan_id.clone();
    save_audited(
        app,
        tx,
        ctx,
        sub,
        "subscription.change_plan",
        Some(before),
        after,
    )
    .await
}

/// Cancels now (the period then bills its recurring fee prorated up to
/// the cancellation, and usage until it) or at the period's end (platform
/// admins).
pub async fn cancel_subscription(
    app: &App,
    ctx: &RequestCtx,
    subscription_id: &str,
    at_period_end: bool,
) -> ApiResult<SubscriptionRow> {
    let (tx, mut sub) = open_subscription(app, ctx, "id", subscription_id).await?;
    let now = app.clock.now();
    let state = stored_state(&sub)?;
    if at_period_end {
        if state == dotmac_billing::SubscriptionState::Cancelled {
            return Err(ApiError::conflict("id", "the subscription is cancelled"));
        }
        sub.cancel_at_period_end = true;
    } else {
        let next = state
            .on(dotmac_billing::SubscriptionEvent::Cancel)
            .map_err(|e| ApiError::conflict("id", e.to_string()))?;
        sub.state = next.as_str().to_owned();
        sub.cancelled_at = Some(now);
    }
    sub.updated_at = now;
    let when = if at_period_end {
        "at_period_end"
    } else {
        "now"
    };
    save_audited(app, tx, ctx, sub, "subscription.cancel", None, when.into()).await
}

/// Pauses (no recurring fees accrue until resumed) or resumes a
/// subscription now (platform admins).
pub async fn set_paused(
    app: &App,
    ctx: &RequestCtx,
    subscription_id: &str,
    pause: bool,
) -> ApiResult<SubscriptionRow> {
    use dotmac_billing::SubscriptionEvent;
    let (tx, mut sub) = open_subscription(app, ctx, "id", subscription_id).await?;
    let now = app.clock.now();
    let state = stored_state(&sub)?;
    let event = if pause {
        SubscriptionEvent::Pause
    } else {
        SubscriptionEvent::Resume
    };
    let next = state
        .on(event)
        .map_err(|e| ApiError::conflict("id", e.to_string()))?;
    if pause {
        rows::insert_pause(
            &tx,
            rows::PauseRow {
                id: format!("pau_{}", uuid::Uuid::now_v7().simple()),
                tenant_id: sub.tenant_id.clone(),
                subscription_id: sub.id.clone(),
                paused_at: now,
                resumed_at: None,
            },
        )
        .await?;
    } else {
        rows::end_pause(&tx, &sub.id, now).await?;
    }
    let before = sub.state.clone();
    sub.state = next.as_str().to_owned();
    sub.updated_at = now;
    let action = if pause {
        "subscription.pause"
    } else {
        "subscription.resume"
    };
    let after = sub.state.clone();
    save_audited(app, tx, ctx, sub, action, Some(before), after).await
}

/// A subscription a platform admin is about to change (`field` names its
/// id on error), in a transaction of the admin's scope.
async fn open_subscription(
    app: &App,
    ctx: &RequestCtx,
    field: &str,
    id: &str,
) -> ApiResult<(crate::store::Tx, SubscriptionRow)> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let sid: SubscriptionId = parse_id(field, id)?;
    let tx = app.store.begin(&p.scope).await?;
    let sub = rows::get_subscription(&tx, &p.scope, sid.as_str()).await?;
    Ok((tx, sub))
}

/// Saves a changed subscription, records `action` (with what it was and
/// is now) in the audit log, and commits.
async fn save_audited(
    app: &App,
    tx: crate::store::Tx,
    ctx: &RequestCtx,
    sub: SubscriptionRow,
    action: &'static str,
    before: Option<String>,
    after: String,
) -> ApiResult<SubscriptionRow> {
    let sub = rows::save_subscription(&tx, sub).await?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(ctx.principal()?),
        ctx.request_id.as_deref(),
        AuditEntry {
            action,
            tenant_id: Some(sub.tenant_id.clone()),
            object_id: Some(sub.id.clone()),
            before,
            after: Some(after),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(sub)
}

/// The first day of a `YYYY-MM` month.
pub fn parse_month(text: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(&format!("{}-01", text.trim()), "%Y-%m-%d").ok()
}

/// The period of `calendar` that starts in `month`'s month, if one does.
pub fn period_starting_in(calendar: &Calendar, month: NaiveDate) -> Option<Period> {
    use chrono::Datelike;
    let first = month.with_day(1)?;
    let mut n = calendar.index_of(first);
    if calendar.boundary(n) < first {
        n += 1;
    }
    let p = calendar.period(n);
    (p.start.year() == first.year() && p.start.month() == first.month()).then_some(p)
}

/// Every tenant's total of each of `meters` over `[from, to)` (rollup
/// windows that start in it), merged by each meter's merge law; keyed by
/// (tenant, meter), absent where a tenant has no usage. Quantities are
/// normalized (no trailing zeros) whichever way they were read, so an
/// invoice line reads the same from ClickHouse's sums as from merged parts.
pub async fn usage_totals(
    app: &App,
    meters: &[String],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<HashMap<(String, String), Decimal>> {
    if let (None, Some(usage)) = (&app.embedded_usage, &app.usage) {
        // ClickHouse sums every tenant's parts itself.
        return Ok(usage
            .meter_totals(meters, from.timestamp(), to.timestamp())
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .by_tenant_meter
            .into_iter()
            .map(|(key, state)| (key, state.value().normalize()))
            .collect());
    }
    let mut out = HashMap::new();
    for meter in meters {
        for (tenant, q) in merged_rollups(app, None, meter, from, to).await? {
            out.insert((tenant, meter.clone()), q);
        }
    }
    Ok(out)
}

/// Each tenant's total of `meter` over `[from, to)` (rollup windows that
/// start in it), merged by the meter's own merge law.
pub async fn usage_by_tenant(
    app: &App,
    tenants: Option<&[String]>,
    meter: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, Decimal>> {
    match tenants {
        None => Ok(usage_totals(app, &[meter.to_owned()], from, to)
            .await?
            .into_iter()
            .map(|((tenant, _), q)| (tenant, q))
            .collect()),
        Some(_) => merged_rollups(app, tenants, meter, from, to).await,
    }
}

/// [`usage_by_tenant`] by merging each window's rollup here.
async fn merged_rollups(
    app: &App,
    tenants: Option<&[String]>,
    meter: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, Decimal>> {
    let (from, to) = (from.timestamp(), to.timestamp());
    let rollups = match (&app.embedded_usage, &app.usage) {
        (Some(embedded), _) => embedded.rollups(tenants, meter, from, to).await?,
        (None, Some(usage)) => usage
            .rollups(tenants, meter, from, to)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?,
        (None, None) => {
            return Err(ApiError::Unavailable(
                "usage is not configured on this server (clickhouse_url)".into(),
            ))
        }
    };
    let mut per_tenant: BTreeMap<String, RollupState> = BTreeMap::new();
    for (key, state) in rollups {
        match per_tenant.get_mut(&key.tenant) {
            Some(total) => total
                .merge(state)
                .map_err(|e| ApiError::internal(format!("usage of {meter}: {e}")))?,
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

/// Billing on a schedule, in `dotmac serve` and `dotmac dev`: every
/// `billing.schedule_minutes` the previous and the current month are closed
/// (drafts kept current, finalized after their grace) and dunning runs.
/// Several processes may run it at once: closes are idempotent and
/// numbering is serialized in the database.
pub fn spawn_schedule(app: App) {
    let minutes = app.config.billing.schedule_minutes;
    if minutes == 0 {
        return;
    }
    tokio::spawn(async move {
        // The first run one period after start: a restart loop does not
        // close over and over.
        let period = std::time::Duration::from_secs(minutes * 60);
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tick.tick().await;
            let now = app.clock.now();
            let this_month = now.date_naive();
            let last_month = this_month
                .checked_sub_months(chrono::Months::new(1))
                .unwrap_or(this_month);
            for month in [last_month, this_month] {
                let req = CloseRequest {
                    month,
                    now,
                    grace: TimeDelta::days(app.config.billing.grace_days),
                };
                match close_period(&app, &req, &|_, _| {}).await {
                    Ok(r) => tracing::info!(month = %month, report = ?r, "scheduled close"),
                    Err(e) => tracing::warn!(month = %month, error = %e, "scheduled close failed"),
                }
            }
            let days = app.config.billing.suspend_after_days;
            match crate::domain::settlement::run_dunning(&app, now, days).await {
                Ok(r) => tracing::info!(report = ?r, "scheduled dunning"),
                Err(e) => tracing::warn!(error = %e, "scheduled dunning failed"),
            }
        }
    });
}

/// A finalized invoice with its tenant's name and lines, for a document.
pub async fn invoice_document(
    app: &App,
    principal: &dotmac_schema::Principal,
    id: &str,
) -> ApiResult<(InvoiceRow, String, Vec<dotmac_billing::InvoiceLine>)> {
    let id: InvoiceId = id.parse().map_err(|_| ApiError::not_found("invoice"))?;
    let scope = &principal.scope;
    let tx = app.store.begin(scope).await?;
    let row = rows::get_invoice(&tx, scope, id.as_str()).await?;
    if matches!(scope, dotmac_schema::Scope::Reseller(_)) {
        return Err(ApiError::Forbidden(
            "resellers see invoice summaries; the document is the tenant's".into(),
        ));
    }
    if row.status == "draft" {
        return Err(ApiError::conflict(
            "id",
            "the invoice is a draft until finalized",
        ));
    }
    let tenant: TenantId = parse_id("tenantId", &row.tenant_id)?;
    let name = crate::store::tenants::get(&tx, scope, &tenant).await?.name;
    tx.commit().await?;
    let lines = rows::lines(&row)?;
    Ok((row, name, lines))
}

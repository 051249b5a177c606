//! Billing use cases: plans, subscriptions and the period close. A close
//! rates every live subscription's period from the committed rollups
//! (ClickHouse, or the embedded store under `dotmac dev`), keeps each
//! invoice a draft through the grace period (a re-close updates it with late
//! usage), then finalizes it with the issuer's next gapless number. Usage
//! that changes after finalization becomes adjustment lines on the next
//! period's invoice. Closing twice, or twice at once, yields the same rows:
//! they meet on `UNIQUE (subscription_id, period_start)`, and only drafts
//! are ever rewritten.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use dotmac_billing::period::Calendar;
use dotmac_billing::{
    adjustment_lines, billed_quantities, build_invoice, recurring_lines, usage_lines, LineDraft,
    Period, UsageTotals,
};
use dotmac_schema::money::Rounding;
use dotmac_schema::price::PlanVersion;
use dotmac_schema::usage::RollupState;
use rust_decimal::Decimal;
use sea_orm::EntityTrait;

use dotmac_schema::{InvoiceId, PlanId, Role, SubscriptionId, TenantId};

use super::{parse_id, required_text};
use crate::app::{App, RequestCtx};
use crate::error::{ApiError, ApiResult};
use crate::store::audit::{self, AuditEntry};
use crate::store::billing::{self as rows, InvoiceRow, PlanRow, SubscriptionRow, PLATFORM_ISSUER};

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
    let row = rows::plan_row(PlanId::new().to_string(), name, &plan, Utc::now())?;
    let tx = app.store.begin(&p.scope).await?;
    let row = rows::insert_plan(&tx, row).await?;
    audit::record(
        &tx,
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
    let now = Utc::now();
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

/// What a subscription adds to its plan: the tenant's tax rate (by its
/// jurisdiction) and a coupon.
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
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let sid: SubscriptionId = parse_id("subscriptionId", subscription_id)?;
    let pid: PlanId = parse_id("planId", plan_id)?;
    let now = Utc::now();
    let tx = app.store.begin(&p.scope).await?;
    let mut sub = rows::get_subscription(&tx, &p.scope, sid.as_str()).await?;
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
    let sub = rows::save_subscription(&tx, sub).await?;
    audit::record(
        &tx,
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "subscription.change_plan",
            tenant_id: Some(sub.tenant_id.clone()),
            object_id: Some(sub.id.clone()),
            before: Some(before),
            after: Some(sub.plan_id.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(sub)
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
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let sid: SubscriptionId = parse_id("id", subscription_id)?;
    let now = Utc::now();
    let tx = app.store.begin(&p.scope).await?;
    let mut sub = rows::get_subscription(&tx, &p.scope, sid.as_str()).await?;
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
    let sub = rows::save_subscription(&tx, sub).await?;
    audit::record(
        &tx,
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "subscription.cancel",
            tenant_id: Some(sub.tenant_id.clone()),
            object_id: Some(sub.id.clone()),
            after: Some(
                if at_period_end {
                    "at_period_end"
                } else {
                    "now"
                }
                .into(),
            ),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(sub)
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
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let sid: SubscriptionId = parse_id("id", subscription_id)?;
    let now = Utc::now();
    let tx = app.store.begin(&p.scope).await?;
    let mut sub = rows::get_subscription(&tx, &p.scope, sid.as_str()).await?;
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
    let sub = rows::save_subscription(&tx, sub).await?;
    audit::record(
        &tx,
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: if pause {
                "subscription.pause"
            } else {
                "subscription.resume"
            },
            tenant_id: Some(sub.tenant_id.clone()),
            object_id: Some(sub.id.clone()),
            before: Some(before),
            after: Some(sub.state.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(sub)
}

/// One close run's parameters.
#[derive(Debug, Clone, Copy)]
pub struct CloseRequest {
    /// Any day of the month whose periods are closed: each subscription's
    /// period that starts in this month.
    pub month: NaiveDate,
    /// The clock of this run (finalization is due at period end + grace).
    pub now: DateTime<Utc>,
    /// How long invoices stay drafts after their period ends.
    pub grace: TimeDelta,
}

/// What a close did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CloseReport {
    /// Subscriptions with a period starting in the month.
    pub subscriptions: usize,
    pub drafted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub finalized: usize,
    /// Subscriptions still in their trial for the whole period.
    pub in_trial: usize,
    /// Subscriptions cancelled inside the period (billed up to then).
    pub cancelled_in_period: usize,
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

/// Each tenant's total of `meter` over `[from, to)` (rollup windows that
/// start in it), merged by the meter's own merge law.
pub async fn usage_by_tenant(
    app: &App,
    tenants: Option<&[String]>,
    meter: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<BTreeMap<String, Decimal>> {
    let (from, to) = (from.timestamp(), to.timestamp());
    if let (None, Some(usage), None) = (&app.embedded_usage, &app.usage, tenants) {
        // Every tenant: ClickHouse groups the parts per tenant.
        return Ok(usage
            .tenant_totals(meter, from, to)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_iter()
            .map(|(t, s)| (t, s.value()))
            .collect());
    }
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
        .map(|(t, s)| (t, s.value()))
        .collect())
}

/// One subscription ready to close.
struct Due {
    sub: SubscriptionRow,
    plan: PlanVersion,
    period: Period,
    /// The period before, whose late usage becomes adjustments.
    previous: Period,
    /// When the recurring fee and usage start to count (trial end).
    accrues_from: DateTime<Utc>,
    /// When they stop (an immediate cancellation), else the period's end.
    accrues_to: DateTime<Utc>,
    /// The plans in force over `[accrues_from, accrues_to)`, in order.
    segments: Vec<(PlanVersion, DateTime<Utc>, DateTime<Utc>)>,
    tax: Option<dotmac_billing::TaxRate>,
    coupon: Option<dotmac_billing::Coupon>,
}

/// Closes the month's periods; `progress(done, total)` after each one.
pub async fn close_period(
    app: &App,
    req: &CloseRequest,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> ApiResult<CloseReport> {
    close_period_in_chunks(app, req, WRITE_CHUNK, progress).await
}

/// [`close_period`] writing `chunk` invoices per transaction. A close that
/// dies between two chunks has committed whole chunks only; running it
/// again writes the rest and numbers on without a gap (tested by killing
/// one mid-way).
pub async fn close_period_in_chunks(
    app: &App,
    req: &CloseRequest,
    chunk: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> ApiResult<CloseReport> {
    let chunk_size = chunk.max(1);
    activate_ended_trials(app, req.now).await?;
    let tx = app.store.begin_system().await?;
    let plans: HashMap<String, PlanVersion> = rows::all_plans(&tx)
        .await?
        .iter()
        .map(|r| Ok((r.id.clone(), rows::plan_version(r)?)))
        .collect::<ApiResult<_>>()?;
    let subs = rows::all_subscriptions(&tx).await?;
    let changes = rows::plan_changes(&tx).await?;
    let pauses = rows::pauses(&tx).await?;
    tx.commit().await?;
    let plan_of = |id: &str| {
        plans
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("plan {id} is missing")))
    };

    let mut report = CloseReport::default();
    let mut due = Vec::new();
    for sub in subs {
        let plan = plan_of(&sub.plan_id)?;
        let calendar = Calendar::new(rows::anchor(&sub)?, plan.interval);
        let Some(period) = period_starting_in(&calendar, req.month) else {
            continue;
        };
        // A subscription cancelled before this period has nothing to bill.
        if sub.cancelled_at.is_some_and(|c| c <= period.start_time()) {
            continue;
        }
        report.subscriptions += 1;
        // Fees accrue from the anchor (a subscription may be backdated to
        // it), or from the trial's end, until an immediate cancellation.
        let anchored = rows::anchor(&sub)?
            .and_time(chrono::NaiveTime::MIN)
            .and_utc();
        let accrues_from = sub
            .trial_ends_at
            .unwrap_or(anchored)
            .max(anchored)
            .max(period.start_time());
        let accrues_to = sub
            .cancelled_at
            .unwrap_or(period.end_time())
            .min(period.end_time());
        if accrues_from >= period.end_time() {
            report.in_trial += 1;
            continue;
        }
        // The plan in force at the period's end: a change made after it
        // (before this close) does not reprice the period.
        let plan = match changes
            .iter()
            .filter(|c| c.subscription_id == sub.id && c.changed_at >= period.end_time())
            .min_by_key(|c| c.changed_at)
        {
            Some(later) => plan_of(&later.from_plan_id)?,
            None => plan,
        };
        // Plan changes inside the period split its recurring fee by time.
        let mut segments = Vec::new();
        let mut from = accrues_from;
        let mut current = None;
        for c in changes.iter().filter(|c| {
            c.subscription_id == sub.id
                && c.changed_at > period.start_time()
                && c.changed_at < period.end_time()
        }) {
            let before = plan_of(&c.from_plan_id)?;
            if c.changed_at > from {
                segments.push((before, from, c.changed_at.min(accrues_to)));
                from = c.changed_at;
            }
            current = Some(plan_of(&c.to_plan_id)?);
        }
        if from < accrues_to {
            segments.push((current.unwrap_or_else(|| plan.clone()), from, accrues_to));
        }
        // No recurring fee accrues while paused.
        let gaps: Vec<(DateTime<Utc>, DateTime<Utc>)> = pauses
            .iter()
            .filter(|p| p.subscription_id == sub.id)
            .map(|p| {
                (
                    p.paused_at,
                    p.resumed_at.unwrap_or(DateTime::<Utc>::MAX_UTC),
                )
            })
            .collect();
        let segments = dotmac_billing::without_gaps(segments, &gaps);
        let previous = calendar.period_containing(period.start - TimeDelta::days(1));
        let tax = rows::terms(&sub.tax, "subscription tax")?;
        let coupon = rows::terms(&sub.coupon, "subscription coupon")?;
        due.push(Due {
            sub,
            plan,
            period,
            previous,
            accrues_from,
            accrues_to,
            segments,
            tax,
            coupon,
        });
    }

    // Usage is read per (period, meter) for every tenant at once, not per
    // subscription: a close costs a query per meter, whatever the tenants.
    let mut usage: HashMap<(Period, String), BTreeMap<String, Decimal>> = HashMap::new();
    let mut wanted: BTreeSet<(Period, String)> = BTreeSet::new();
    for d in &due {
        for meter in d.plan.prices.iter().filter_map(|p| p.meter.clone()) {
            wanted.insert((d.period, meter.clone()));
            wanted.insert((d.previous, meter));
        }
    }
    for (period, meter) in wanted {
        let totals =
            usage_by_tenant(app, None, &meter, period.start_time(), period.end_time()).await?;
        usage.insert((period, meter), totals);
    }
    let totals_of = |period: Period, tenant: &str, plan: &PlanVersion| -> UsageTotals {
        plan.prices
            .iter()
            .filter_map(|p| p.meter.clone())
            .map(|m| {
                let q = usage
                    .get(&(period, m.clone()))
                    .and_then(|t| t.get(tenant))
                    .copied()
                    .unwrap_or_default();
                (m, q)
            })
            .collect()
    };

    // What exists already, read once rather than per subscription: the
    // month's invoices, every settled invoice of these subscriptions (for
    // adjustments and coupons), and each tenant's reseller (for events).
    let tx = app.store.begin_system().await?;
    let starts: BTreeSet<String> = due.iter().map(|d| d.period.start.to_string()).collect();
    let mut existing: HashMap<(String, String), InvoiceRow> = HashMap::new();
    for row in rows::invoices_starting(&tx, &starts).await? {
        existing.insert((row.subscription_id.clone(), row.period_start.clone()), row);
    }
    let mut settled: HashMap<String, Vec<InvoiceRow>> = HashMap::new();
    for row in rows::settled_invoices(&tx).await? {
        settled
            .entry(row.subscription_id.clone())
            .or_default()
            .push(row);
    }
    let resellers: HashMap<String, Option<String>> = crate::store::entity::tenant::Entity::find()
        .all(&tx)
        .await?
        .into_iter()
        .map(|t| (t.id, t.reseller_id))
        .collect();
    tx.commit().await?;

    let mut inserts = Vec::new();
    let mut updates = Vec::new();
    for d in &due {
        let mut counted = totals_of(d.period, &d.sub.tenant_id, &d.plan);
        if d.accrues_from > d.period.start_time() || d.accrues_to < d.period.end_time() {
            // A trial ended or the subscription was cancelled inside the
            // period: only usage while it ran counts.
            for (meter, q) in counted.iter_mut() {
                *q = usage_by_tenant(
                    app,
                    Some(std::slice::from_ref(&d.sub.tenant_id)),
                    meter,
                    d.accrues_from,
                    d.accrues_to,
                )
                .await?
                .remove(&d.sub.tenant_id)
                .unwrap_or_default();
            }
            if d.accrues_to < d.period.end_time() {
                report.cancelled_in_period += 1;
            }
        }
        let mut lines = Vec::new();
        for (plan, from, to) in &d.segments {
            lines.extend(recurring_lines(
                plan,
                &d.period,
                *from,
                *to,
                Rounding::default(),
            ));
        }
        lines.extend(usage_lines(&d.plan, &counted));
        let history = settled.get(&d.sub.id).map(Vec::as_slice).unwrap_or(&[]);
        lines.extend(adjustments(d, history, &totals_of)?);
        let invoice = build_invoice(
            lines,
            d.plan.currency,
            Rounding::default(),
            coupon_for(d, history),
            d.tax.as_ref(),
            Decimal::ZERO,
        );
        match existing.get(&(d.sub.id.clone(), d.period.start.to_string())) {
            None => inserts.push(new_draft(d, &invoice, req.now)?),
            Some(row) if row.status == "draft" => {
                let mut changed = row.clone();
                rows::set_amounts(&mut changed, &invoice)?;
                if changed == *row {
                    report.unchanged += 1;
                } else {
                    updates.push(changed);
                }
            }
            Some(_) => report.unchanged += 1,
        }
    }

    // Writes in chunks, one transaction each: a crash loses at most the
    // chunk in flight, and the next close writes it (drafts meet on the
    // unique period key, so nothing is written twice).
    let total = inserts.len() + updates.len();
    let mut done = 0;
    for chunk in inserts.chunks(chunk_size) {
        let tx = app.store.begin_system().await?;
        let written = rows::insert_drafts(&tx, chunk).await?;
        tx.commit().await?;
        report.drafted += written;
        report.unchanged += chunk.len() - written;
        done += chunk.len();
        progress(done, total);
    }
    for chunk in updates.chunks(chunk_size) {
        let tx = app.store.begin_system().await?;
        for row in chunk {
            if rows::update_draft(&tx, row, req.now).await? {
                report.updated += 1;
            } else {
                report.unchanged += 1;
            }
        }
        tx.commit().await?;
        done += chunk.len();
        progress(done, total);
    }

    // Finalization of what is past its grace, a chunk per transaction, each
    // drawing its numbers from the issuer's sequence in that transaction.
    let ripe: HashSet<String> = due
        .iter()
        .filter(|d| req.now >= d.period.end_time() + req.grace)
        .map(|d| d.sub.id.clone())
        .collect();
    if !ripe.is_empty() {
        let tx = app.store.begin_system().await?;
        let drafts: Vec<String> = rows::invoices_starting(&tx, &starts)
            .await?
            .into_iter()
            .filter(|r| r.status == "draft" && ripe.contains(&r.subscription_id))
            .map(|r| r.id)
            .collect();
        tx.commit().await?;
        let postgres = app.store.backend() == sea_orm::DbBackend::Postgres;
        let to_finalize = drafts.len();
        let mut finalized_so_far = 0;
        for chunk in drafts.chunks(chunk_size) {
            let tx = app.store.begin_system().await?;
            let finalized =
                rows::finalize_many(&tx, chunk, PLATFORM_ISSUER, req.now, NET_DAYS, postgres)
                    .await?;
            tx.commit().await?;
            report.finalized += finalized.len();
            finalized_so_far += chunk.len();
            progress(finalized_so_far, to_finalize);
            for row in finalized {
                tracing::info!(invoice = %row.id, number = ?row.number, tenant = %row.tenant_id, "invoice finalized");
                let event = crate::events::BusEvent::Invoice(crate::events::InvoiceFinalized {
                    reseller_id: resellers.get(&row.tenant_id).cloned().flatten(),
                    invoice_id: row.id,
                    tenant_id: row.tenant_id,
                    number: row.number.unwrap_or_default(),
                    total: row.total,
                    currency: row.currency,
                    finalized_at: req.now,
                });
                // Finalized whatever the bus does: subscribers may miss it.
                if let Err(e) = app.bus.publish(&event).await {
                    tracing::warn!(error = %e, "invoiceFinalized not published");
                }
            }
        }
    }
    for d in due
        .iter()
        .filter(|d| d.sub.cancel_at_period_end && req.now >= d.period.end_time())
    {
        end_at_period_end(app, &d.sub.id, d.period.end_time()).await?;
    }
    Ok(report)
}

/// Trials that ended by `now` become active subscriptions.
pub async fn activate_ended_trials(app: &App, now: DateTime<Utc>) -> ApiResult<u64> {
    use crate::store::entity::subscription;
    use sea_orm::sea_query::Expr;
    use sea_orm::{ColumnTrait, QueryFilter};
    let tx = app.store.begin_system().await?;
    let res = subscription::Entity::update_many()
        .col_expr(subscription::Column::State, Expr::value("active"))
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
        .filter(subscription::Column::State.eq("trial"))
        .filter(subscription::Column::TrialEndsAt.lte(now))
        .exec(&tx)
        .await?;
    tx.commit().await?;
    Ok(res.rows_affected)
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
            let now = Utc::now();
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

/// Invoices written per transaction by a close.
const WRITE_CHUNK: usize = 500;

/// The coupon, while it has periods left: those already discounted are
/// the subscription's settled invoices of other periods with a discount.
fn coupon_for<'a>(d: &'a Due, history: &[InvoiceRow]) -> Option<&'a dotmac_billing::Coupon> {
    let c = d.coupon.as_ref()?;
    let used = history
        .iter()
        .filter(|i| i.period_start != d.period.start.to_string())
        .filter(|i| rows::dec(&i.discount).is_ok_and(|v| !v.is_zero()))
        .count();
    c.applies_after(u32::try_from(used).unwrap_or(u32::MAX))
        .then_some(c)
}

/// A new draft row for `d`'s period.
fn new_draft(
    d: &Due,
    invoice: &dotmac_billing::Invoice,
    now: DateTime<Utc>,
) -> ApiResult<InvoiceRow> {
    let mut row = InvoiceRow {
        id: InvoiceId::new().to_string(),
        tenant_id: d.sub.tenant_id.clone(),
        subscription_id: d.sub.id.clone(),
        period_start: d.period.start.to_string(),
        period_end: d.period.end.to_string(),
        status: "draft".into(),
        currency: String::new(),
        issuer: PLATFORM_ISSUER.into(),
        number: None,
        subtotal: String::new(),
        discount: String::new(),
        tax: String::new(),
        total: String::new(),
        amount_due: String::new(),
        lines: String::new(),
        finalized_at: None,
        due_at: None,
        created_at: now,
        updated_at: now,
        paid: "0".into(),
        credited: "0".into(),
        credit_applied: "0".into(),
        status_reason: None,
    };
    rows::set_amounts(&mut row, invoice)?;
    Ok(row)
}

/// Ends a subscription that was to cancel at the end of a closed period.
async fn end_at_period_end(app: &App, id: &str, at: DateTime<Utc>) -> ApiResult<()> {
    let tx = app.store.begin_system().await?;
    let mut sub = rows::get_subscription(&tx, &dotmac_schema::Scope::All, id).await?;
    if sub.state != "cancelled" {
        sub.state = "cancelled".into();
        sub.cancelled_at = Some(at);
        sub.updated_at = Utc::now();
        rows::save_subscription(&tx, sub).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Adjustment lines for the previous period's finalized invoice when its
/// usage changed since (usage of older periods is not re-read: the
/// dedupe horizon and the aggregator's time limits keep late events within
/// about a month).
fn adjustments(
    d: &Due,
    history: &[InvoiceRow],
    totals_of: &(dyn Fn(Period, &str, &PlanVersion) -> UsageTotals + Sync),
) -> ApiResult<Vec<LineDraft>> {
    let mut out = Vec::new();
    if !history
        .iter()
        .any(|r| rows::period_of(r).is_ok_and(|p| p == d.previous))
    {
        return Ok(out);
    }
    let mut all_lines = Vec::new();
    for row in history {
        all_lines.extend(rows::lines(row)?);
    }
    let billed = billed_quantities(all_lines.iter().map(|l| &l.kind), &d.previous);
    let counted = totals_of(d.previous, &d.sub.tenant_id, &d.plan);
    out.extend(adjustment_lines(&d.plan, &d.previous, &billed, &counted));
    Ok(out)
}

/// Closes `month` (`YYYY-MM`) now, as a platform admin (GraphQL's path; the
/// CLI calls [`close_period`] with its own clock and grace).
pub async fn close_as(app: &App, ctx: &RequestCtx, month: &str) -> ApiResult<CloseReport> {
    ctx.writer_with(&[Role::PlatformAdmin])?;
    let first = parse_month(month)
        .ok_or_else(|| ApiError::validation("month", "must be a month such as 2026-11"))?;
    let req = CloseRequest {
        month: first,
        now: Utc::now(),
        grace: TimeDelta::days(app.config.billing.grace_days),
    };
    close_period(app, &req, &|_, _| {}).await
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

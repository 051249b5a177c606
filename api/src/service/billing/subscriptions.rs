//! Subscriptions: a tenant on a plan version from an anchor date, with its
//! own tax rate and coupon; plan changes (prorated by time in force),
//! pauses, cancellation now or at the period's end, and trials that end.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rust_decimal::Decimal;

use dotmac_schema::{PlanId, Role, SubscriptionEvent, SubscriptionId, SubscriptionState, TenantId};

use super::Billing;
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::{parse_id, required_text};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::billing_rows::{self as rows, SubscriptionRow};

/// Subscribes a tenant to a plan version (platform admins). Billing periods
/// start on `anchor` (default: today); the plan's trial runs from now.
pub async fn subscribe(
    billing: &Billing,
    ctx: &RequestCtx,
    tenant_id: &str,
    plan_id: &str,
    anchor: Option<NaiveDate>,
    terms: SubscriptionTerms,
) -> ApiResult<SubscriptionRow> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    terms.validate()?;
    let tenant: TenantId = parse_id("input.tenantId", tenant_id)?;
    let now = billing.clock.now();
    let anchor = anchor.unwrap_or(now.date_naive());
    dotmac_schema::dates::check_date(anchor)
        .map_err(|e| ApiError::validation("input.anchorDate", e.to_string()))?;
    let tx = billing.store.begin(&p.scope).await?;
    crate::store::tenant_rows::get(&tx, &p.scope, &tenant).await?;
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
            SubscriptionState::Trial
        } else {
            SubscriptionState::Active
        },
        anchor_date: anchor.to_string(),
        trial_ends_at,
        cancel_at_period_end: false,
        cancelled_at: None,
        cancels_at: None,
        covers_from: anchor.and_time(chrono::NaiveTime::MIN).and_utc(),
        created_at: now,
        updated_at: now,
        tax: json(&terms.tax)?,
        coupon: json(&terms.coupon)?,
    };
    let row = rows::insert_subscription(&tx, row).await?;
    audit_log::record(
        &tx,
        billing.clock.now(),
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

fn json<T: serde::Serialize>(v: &Option<T>) -> ApiResult<Option<String>> {
    v.as_ref()
        .map(|v| serde_json::to_string(v).map_err(|e| ApiError::internal(e.to_string())))
        .transpose()
}

/// Moves a live subscription to another plan version now (platform
/// admins). The period's recurring fees are prorated between the plans by
/// time in force; usage is rated under the plan in force at the close.
pub async fn change_plan(
    billing: &Billing,
    ctx: &RequestCtx,
    subscription_id: &str,
    plan_id: &str,
) -> ApiResult<SubscriptionRow> {
    ctx.writer_with(&[Role::PlatformAdmin])?;
    let pid: PlanId = parse_id("planId", plan_id)?;
    let (tx, mut sub) = open_subscription(billing, ctx, "subscriptionId", subscription_id).await?;
    let now = billing.clock.now();
    if sub.state == SubscriptionState::Cancelled {
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
        billing,
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
    billing: &Billing,
    ctx: &RequestCtx,
    subscription_id: &str,
    at_period_end: bool,
) -> ApiResult<SubscriptionRow> {
    let (tx, mut sub) = open_subscription(billing, ctx, "id", subscription_id).await?;
    let now = billing.clock.now();
    let state = sub.state;
    if at_period_end {
        if state == SubscriptionState::Cancelled {
            return Err(ApiError::conflict("id", "the subscription is cancelled"));
        }
        // Dated now, to the end of the period it is asked in (the first
        // period, for a subscription that has not started): whichever
        // close runs later, it ends there.
        let plan = rows::plan_version(&rows::get_plan(&tx, &sub.plan_id).await?)?;
        let anchor = rows::anchor(&sub)?;
        let from = now.date_naive().max(anchor);
        let period = dotmac_billing::Calendar::new(anchor, plan.interval)
            .period_containing(from)
            .ok_or_else(|| ApiError::conflict("id", "no billing period contains today"))?;
        sub.cancel_at_period_end = true;
        sub.cancels_at = Some(period.end_time());
    } else {
        let next = state
            .on(SubscriptionEvent::Cancel)
            .map_err(|e| ApiError::conflict("id", e.to_string()))?;
        sub.state = next;
        sub.cancelled_at = Some(now);
    }
    sub.updated_at = now;
    let when = if at_period_end {
        "at_period_end"
    } else {
        "now"
    };
    save_audited(
        billing,
        tx,
        ctx,
        sub,
        "subscription.cancel",
        None,
        when.into(),
    )
    .await
}

/// Pauses (no recurring fees accrue until resumed) or resumes a
/// subscription now (platform admins).
pub async fn set_paused(
    billing: &Billing,
    ctx: &RequestCtx,
    subscription_id: &str,
    pause: bool,
) -> ApiResult<SubscriptionRow> {
    let (tx, mut sub) = open_subscription(billing, ctx, "id", subscription_id).await?;
    let now = billing.clock.now();
    let state = sub.state;
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
    let before = sub.state.as_str().to_owned();
    sub.state = next;
    sub.updated_at = now;
    let action = if pause {
        "subscription.pause"
    } else {
        "subscription.resume"
    };
    let after = sub.state.as_str().to_owned();
    save_audited(billing, tx, ctx, sub, action, Some(before), after).await
}

/// A subscription a platform admin is about to change (`field` names its
/// id on error), in a transaction of the admin's scope.
async fn open_subscription(
    billing: &Billing,
    ctx: &RequestCtx,
    field: &str,
    id: &str,
) -> ApiResult<(crate::store::Tx, SubscriptionRow)> {
    let p = ctx.writer_with(&[Role::PlatformAdmin])?;
    let sid: SubscriptionId = parse_id(field, id)?;
    let tx = billing.store.begin(&p.scope).await?;
    let sub = rows::get_subscription(&tx, &p.scope, sid.as_str()).await?;
    Ok((tx, sub))
}

/// Saves a changed subscription, records `action` (with what it was and
/// is now) in the audit log, and commits.
async fn save_audited(
    billing: &Billing,
    tx: crate::store::Tx,
    ctx: &RequestCtx,
    sub: SubscriptionRow,
    action: &'static str,
    before: Option<String>,
    after: String,
) -> ApiResult<SubscriptionRow> {
    let sub = rows::save_subscription(&tx, sub).await?;
    audit_log::record(
        &tx,
        billing.clock.now(),
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

/// Trials that ended by `now` become active subscriptions.
pub async fn activate_ended_trials(billing: &Billing, now: DateTime<Utc>) -> ApiResult<u64> {
    let tx = billing.store.begin_system().await?;
    let activated = rows::activate_ended_trials(&tx, now).await?;
    tx.commit().await?;
    Ok(activated)
}

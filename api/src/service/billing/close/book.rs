//! What a close is due to bill: the catalogue and every subscription with
//! its plan changes and pauses, read once, turned into the subscriptions
//! with a period starting in the month and the plans in force over it.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use dotmac_billing::period::Calendar;
use dotmac_billing::Period;
use dotmac_schema::price::PlanVersion;

use super::CloseReport;
use crate::error::{ApiError, ApiResult};
use crate::service::billing::Billing;
use crate::store::billing_rows::{self as rows, PauseRow, PlanChangeRow, SubscriptionRow};

/// The catalogue and every subscription with its plan changes and pauses.
pub(super) struct Book {
    pub(super) plans: HashMap<String, PlanVersion>,
    pub(super) subscriptions: Vec<SubscriptionRow>,
    pub(super) changes: HashMap<String, Vec<PlanChangeRow>>,
    pub(super) pauses: HashMap<String, Vec<PauseRow>>,
}

impl Book {
    pub(super) async fn read(billing: &Billing) -> ApiResult<Book> {
        let tx = billing.store.begin_system().await?;
        let plans = rows::all_plans(&tx)
            .await?
            .iter()
            .map(|r| Ok((r.id.clone(), rows::plan_version(r)?)))
            .collect::<ApiResult<_>>()?;
        let subscriptions = rows::all_subscriptions(&tx).await?;
        let mut changes: HashMap<String, Vec<PlanChangeRow>> = HashMap::new();
        for c in rows::plan_changes(&tx).await? {
            changes
                .entry(c.subscription_id.clone())
                .or_default()
                .push(c);
        }
        let mut pauses: HashMap<String, Vec<PauseRow>> = HashMap::new();
        for p in rows::pauses(&tx).await? {
            pauses.entry(p.subscription_id.clone()).or_default().push(p);
        }
        tx.commit().await?;
        Ok(Book {
            plans,
            subscriptions,
            changes,
            pauses,
        })
    }

    pub(super) fn plan(&self, id: &str) -> ApiResult<PlanVersion> {
        self.plans
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("plan {id} is missing")))
    }

    /// The subscriptions with a period starting in `month` that bill
    /// something, with what they bill it under. A subscription whose data
    /// cannot be read (a missing plan, an unreadable anchor or terms) is a
    /// failure of its own in `report`; the others are due.
    pub(super) fn due(self, month: NaiveDate, report: &mut CloseReport) -> Vec<Due> {
        let mut due = Vec::new();
        for sub in &self.subscriptions {
            match self.due_one(sub, month, report) {
                Ok(Some(d)) => due.push(d),
                Ok(None) => {}
                Err(e) => report.failed.push(super::CloseFailure::of(sub, &e)),
            }
        }
        due
    }

    /// `sub`, if it has a period starting in `month` that bills something.
    fn due_one(
        &self,
        sub: &SubscriptionRow,
        month: NaiveDate,
        report: &mut CloseReport,
    ) -> ApiResult<Option<Due>> {
        let plan = self.plan(&sub.plan_id)?;
        let anchor = rows::anchor(sub)?;
        let calendar = Calendar::new(anchor, plan.interval);
        let Some(period) = calendar.period_starting_in(month) else {
            return Ok(None);
        };
        // A subscription cancelled before this period has nothing to bill;
        // one to cancel at a period's end ends there, whether or not a
        // close has ended it yet.
        let ends_at = sub.cancelled_at.or(sub.cancels_at);
        if ends_at.is_some_and(|c| c <= period.start_time()) {
            return Ok(None);
        }
        // Nor one anchored after it: the calendar also runs backwards from
        // the anchor, to periods the subscription was not yet in.
        let anchored = anchor.and_time(chrono::NaiveTime::MIN).and_utc();
        if period.end_time() <= anchored {
            return Ok(None);
        }
        report.subscriptions += 1;
        // Fees accrue from the anchor (a subscription may be backdated
        // to it), or from the trial's end, until an immediate
        // cancellation.
        let accrues_from = sub
            .trial_ends_at
            .unwrap_or(anchored)
            .max(anchored)
            .max(period.start_time());
        let accrues_to = ends_at.unwrap_or(period.end_time()).min(period.end_time());
        if accrues_from >= period.end_time() {
            report.in_trial += 1;
            return Ok(None);
        }
        let changes = self.changes.get(&sub.id).map(Vec::as_slice).unwrap_or(&[]);
        // The plan in force at the period's end: a change made after it
        // (before this close) does not reprice the period.
        let plan = match changes
            .iter()
            .filter(|c| c.changed_at >= period.end_time())
            .min_by_key(|c| c.changed_at)
        {
            Some(later) => self.plan(&later.from_plan_id)?,
            None => plan,
        };
        // Plan changes inside the period split its recurring fee by time.
        let mut segments = Vec::new();
        let mut from = accrues_from;
        let mut current = None;
        for c in changes
            .iter()
            .filter(|c| c.changed_at > period.start_time() && c.changed_at < period.end_time())
        {
            let before = self.plan(&c.from_plan_id)?;
            if c.changed_at > from {
                segments.push((before, from, c.changed_at.min(accrues_to)));
                from = c.changed_at;
            }
            current = Some(self.plan(&c.to_plan_id)?);
        }
        if from < accrues_to {
            segments.push((current.unwrap_or_else(|| plan.clone()), from, accrues_to));
        }
        // No recurring fee accrues while paused.
        let gaps: Vec<(DateTime<Utc>, DateTime<Utc>)> = self
            .pauses
            .get(&sub.id)
            .into_iter()
            .flatten()
            .map(|p| {
                (
                    p.paused_at,
                    p.resumed_at.unwrap_or(DateTime::<Utc>::MAX_UTC),
                )
            })
            .collect();
        let segments = dotmac_billing::without_gaps(segments, &gaps);
        let previous = calendar
            .period_containing(period.start - TimeDelta::days(1))
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "subscription {}: the period before {} leaves the calendar",
                    sub.id, period.start
                ))
            })?;
        Ok(Some(Due {
            tax: rows::terms(&sub.tax, "subscription tax")?,
            coupon: rows::terms(&sub.coupon, "subscription coupon")?,
            sub: sub.clone(),
            plan,
            period,
            previous,
            accrues_from,
            accrues_to,
            segments,
        }))
    }
}

/// One subscription ready to close.
pub(super) struct Due {
    pub(super) sub: SubscriptionRow,
    pub(super) plan: PlanVersion,
    pub(super) period: Period,
    /// The period before, whose late usage becomes adjustments.
    pub(super) previous: Period,
    /// When the recurring fee and usage start to count (trial end).
    pub(super) accrues_from: DateTime<Utc>,
    /// When they stop (an immediate cancellation), else the period's end.
    pub(super) accrues_to: DateTime<Utc>,
    /// The plans in force over `[accrues_from, accrues_to)`, in order.
    pub(super) segments: Vec<(PlanVersion, DateTime<Utc>, DateTime<Utc>)>,
    pub(super) tax: Option<dotmac_billing::TaxRate>,
    pub(super) coupon: Option<dotmac_billing::Coupon>,
}

impl Due {
    pub(super) fn meters(&self) -> impl Iterator<Item = &String> {
        self.plan.prices.iter().filter_map(|p| p.meter.as_ref())
    }
}

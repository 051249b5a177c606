//! The period close. It rates every live subscription's period from the
//! committed rollups (ClickHouse, or the embedded store under `dotmac dev`),
//! keeps each invoice a draft through the grace period (a re-close updates
//! it with late usage), then finalizes it with the issuer's next gapless
//! number. Usage that changes after finalization becomes adjustment lines
//! on the next period's invoice. Closing twice, or twice at once, yields the
//! same rows: they meet on `UNIQUE (subscription_id, period_start)`, and
//! only drafts are ever rewritten.
//!
//! Its cost is a few reads and one transaction per chunk of invoices: the
//! usage of every tenant and meter is read once per distinct period (summed
//! in ClickHouse), what exists already is read once, an invoice past its
//! grace is inserted and finalized in the same transaction, and each chunk
//! goes to Postgres while the next is rated.

mod book;
mod finalized_events;
mod rating;
mod read_model;
mod writer;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use dotmac_schema::Role;

use super::periods::parse_month;
use super::subscriptions::activate_ended_trials;
use super::Billing;
use crate::caller::RequestCtx;
use crate::error::ApiResult;
use crate::store::billing_rows as rows;
use book::Book;
use read_model::{Known, Usage};
use writer::rate_and_write;

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
    /// New invoices written: drafts, or finalized at once when past grace.
    pub drafted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub finalized: usize,
    /// Subscriptions still in their trial for the whole period.
    pub in_trial: usize,
    /// Subscriptions cancelled inside the period (billed up to then).
    pub cancelled_in_period: usize,
    /// Subscriptions the close could not bill, each with its tenant and
    /// why; every other subscription was billed.
    pub failed: Vec<CloseFailure>,
    /// Usage of finalized periods that fell since they were billed. The
    /// close never refunds it: each is for a platform admin to settle with
    /// a credit note (`createCreditNote`) or not.
    pub credit_due: Vec<CreditDue>,
}

/// Usage of a subscription's finalized period that fell after billing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreditDue {
    pub tenant_id: String,
    pub subscription_id: String,
    pub fall: dotmac_billing::UsageDecrease,
}

/// A subscription one close could not bill (its data cannot be totalled or
/// rated): named with its tenant and cause, while the others are billed.
/// The next close tries it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFailure {
    pub tenant_id: String,
    pub subscription_id: String,
    pub cause: String,
}

impl CloseFailure {
    fn of(sub: &crate::store::billing_rows::SubscriptionRow, e: &crate::error::ApiError) -> Self {
        CloseFailure {
            tenant_id: sub.tenant_id.clone(),
            subscription_id: sub.id.clone(),
            cause: e.detail(),
        }
    }
}

/// Subscriptions whose invoices are written per transaction: a crash loses
/// at most one chunk's work, and 1,000 rows of 23 columns stay within
/// SQLite's 32,766 parameters per statement.
const WRITE_CHUNK: usize = 1000;

/// Closes the month's periods; `progress(done, total)` after each chunk.
pub async fn close_period(
    billing: &Billing,
    req: &CloseRequest,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> ApiResult<CloseReport> {
    close_period_in_chunks(billing, req, WRITE_CHUNK, progress).await
}

/// [`close_period`] writing what each `chunk` subscriptions produce in one
/// transaction (`chunk` invoices at most). A close that
/// dies between two chunks has committed whole chunks only; running it
/// again writes the rest and numbers on without a gap (tested by killing
/// one mid-way).
pub async fn close_period_in_chunks(
    billing: &Billing,
    req: &CloseRequest,
    chunk: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> ApiResult<CloseReport> {
    let started = std::time::Instant::now();
    // Postgres keeps microseconds: every timestamp this close writes is the
    // same, whichever statement writes it.
    let req = &CloseRequest {
        now: chrono::SubsecRound::trunc_subsecs(req.now, 6),
        ..*req
    };
    activate_ended_trials(billing, req.now).await?;
    let book = Book::read(billing).await?;
    tracing::debug!(ms = started.elapsed().as_millis(), "subscriptions read");
    let mut report = CloseReport::default();
    let due = book.due(req.month, &mut report);
    // ClickHouse and Postgres answer at the same time.
    let timed = |what: &'static str, at: std::time::Instant| {
        tracing::debug!(ms = at.elapsed().as_millis(), "{what} read");
    };
    let (usage, known) = tokio::try_join!(
        async {
            let at = std::time::Instant::now();
            let usage = Usage::read(billing, &due).await;
            timed("usage", at);
            usage
        },
        async {
            let at = std::time::Instant::now();
            let known = Known::read(billing, &due).await;
            timed("existing invoices", at);
            known
        }
    )?;
    let read = started.elapsed();
    rate_and_write(
        billing,
        req,
        &due,
        &usage,
        &known,
        chunk.max(1),
        progress,
        &mut report,
    )
    .await?;
    tracing::info!(
        month = %req.month,
        read_ms = read.as_millis(),
        rate_and_write_ms = (started.elapsed() - read).as_millis(),
        ?report,
        "period closed"
    );
    for failure in &report.failed {
        tracing::warn!(
            tenant = %failure.tenant_id,
            subscription = %failure.subscription_id,
            cause = %failure.cause,
            "a subscription could not be billed; the others were"
        );
    }
    end_due_cancellations(billing, req.now).await?;
    Ok(report)
}

/// Closes `month` (`YYYY-MM`) now, as a platform admin (GraphQL's path; the
/// CLI calls [`close_period`] with its own clock and grace).
pub async fn close_as(billing: &Billing, ctx: &RequestCtx, month: &str) -> ApiResult<CloseReport> {
    ctx.writer_with(&[Role::PlatformAdmin])?;
    let first = parse_month("month", month)?;
    let req = CloseRequest {
        month: first,
        now: billing.clock.now(),
        grace: TimeDelta::days(billing.settings.grace_days),
    };
    close_period(billing, &req, &|_, _| {}).await
}

/// Ends every subscription whose cancellation at period end is due by
/// `now`, dated to the end of the period in which it was asked, whichever
/// month this close was for. (Ending it leaves its last period billable in
/// full: a cancellation at the period's end accrues to that end.)
async fn end_due_cancellations(billing: &Billing, now: DateTime<Utc>) -> ApiResult<()> {
    let tx = billing.store.begin_system().await?;
    rows::end_due_cancellations(&tx, now, billing.clock.now()).await?;
    tx.commit().await?;
    Ok(())
}

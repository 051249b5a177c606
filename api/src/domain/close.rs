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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use dotmac_billing::period::Calendar;
use dotmac_billing::{
    adjustment_lines, billed_quantities, build_invoice, recurring_lines, usage_lines, LineDraft,
    Period, UsageTotals,
};
use dotmac_schema::money::Rounding;
use dotmac_schema::price::PlanVersion;
use dotmac_schema::{InvoiceId, Role};
use rust_decimal::Decimal;
use sea_orm::{EntityTrait, QuerySelect};

use super::billing::{parse_month, period_starting_in, usage_by_tenant, usage_totals, NET_DAYS};
use super::tax::Jurisdictions;
use crate::app::{App, RequestCtx};
use crate::error::{ApiError, ApiResult};
use crate::store::billing::{
    self as rows, FinalizedInvoice, InvoiceRow, PauseRow, PlanChangeRow, SubscriptionRow,
    PLATFORM_ISSUER,
};

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
}

/// Subscriptions whose invoices are written per transaction: a crash loses
/// at most one chunk's work, and 1,000 rows of 23 columns stay within
/// SQLite's 32,766 parameters per statement.
const WRITE_CHUNK: usize = 1000;

/// Closes the month's periods; `progress(done, total)` after each chunk.
pub async fn close_period(
    app: &App,
    req: &CloseRequest,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> ApiResult<CloseReport> {
    close_period_in_chunks(app, req, WRITE_CHUNK, progress).await
}

/// [`close_period`] writing what each `chunk` subscriptions produce in one
/// transaction (`chunk` invoices at most). A close that
/// dies between two chunks has committed whole chunks only; running it
/// again writes the rest and numbers on without a gap (tested by killing
/// one mid-way).
pub async fn close_period_in_chunks(
    app: &App,
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
    activate_ended_trials(app, req.now).await?;
    let book = Book::read(app).await?;
    tracing::debug!(ms = started.elapsed().as_millis(), "subscriptions read");
    let mut report = CloseReport::default();
    let due = book.due(req.month, &mut report)?;
    // ClickHouse and Postgres answer at the same time.
    let timed = |what: &'static str, at: std::time::Instant| {
        tracing::debug!(ms = at.elapsed().as_millis(), "{what} read");
    };
    let (usage, known) = tokio::try_join!(
        async {
            let at = std::time::Instant::now();
            let usage = Usage::read(app, &due).await;
            timed("usage", at);
            usage
        },
        async {
            let at = std::time::Instant::now();
            let known = Known::read(app, &due).await;
            timed("existing invoices", at);
            known
        }
    )?;
    let read = started.elapsed();
    rate_and_write(
        app,
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
    for d in due
        .iter()
        .filter(|d| d.sub.cancel_at_period_end && req.now >= d.period.end_time())
    {
        end_at_period_end(app, &d.sub.id, d.period.end_time()).await?;
    }
    Ok(report)
}

/// Closes `month` (`YYYY-MM`) now, as a platform admin (GraphQL's path; the
/// CLI calls [`close_period`] with its own clock and grace).
pub async fn close_as(app: &App, ctx: &RequestCtx, month: &str) -> ApiResult<CloseReport> {
    ctx.writer_with(&[Role::PlatformAdmin])?;
    let first = parse_month(month)
        .ok_or_else(|| ApiError::validation("month", "must be a month such as 2026-11"))?;
    let req = CloseRequest {
        month: first,
        now: app.clock.now(),
        grace: TimeDelta::days(app.config.billing.grace_days),
    };
    close_period(app, &req, &|_, _| {}).await
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

/// The catalogue and every subscription with its plan changes and pauses.
struct Book {
    plans: HashMap<String, PlanVersion>,
    subscriptions: Vec<SubscriptionRow>,
    changes: HashMap<String, Vec<PlanChangeRow>>,
    pauses: HashMap<String, Vec<PauseRow>>,
}

impl Book {
    async fn read(app: &App) -> ApiResult<Book> {
        let tx = app.store.begin_system().await?;
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

    fn plan(&self, id: &str) -> ApiResult<PlanVersion> {
        self.plans
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::internal(format!("plan {id} is missing")))
    }

    /// The subscriptions with a period starting in `month` that bill
    /// something, with what they bill it under.
    fn due(self, month: NaiveDate, report: &mut CloseReport) -> ApiResult<Vec<Due>> {
        let mut due = Vec::new();
        for sub in &self.subscriptions {
            let plan = self.plan(&sub.plan_id)?;
            let anchor = rows::anchor(sub)?;
            let calendar = Calendar::new(anchor, plan.interval);
            let Some(period) = period_starting_in(&calendar, month) else {
                continue;
            };
            // A subscription cancelled before this period has nothing to bill.
            if sub.cancelled_at.is_some_and(|c| c <= period.start_time()) {
                continue;
            }
            report.subscriptions += 1;
            // Fees accrue from the anchor (a subscription may be backdated
            // to it), or from the trial's end, until an immediate
            // cancellation.
            let anchored = anchor.and_time(chrono::NaiveTime::MIN).and_utc();
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
            let previous = calendar.period_containing(period.start - TimeDelta::days(1));
            due.push(Due {
                tax: rows::terms(&sub.tax, "subscription tax")?,
                coupon: rows::terms(&sub.coupon, "subscription coupon")?,
                sub: sub.clone(),
                plan,
                period,
                previous,
                accrues_from,
                accrues_to,
                segments,
            });
        }
        Ok(due)
    }
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

impl Due {
    fn meters(&self) -> impl Iterator<Item = &String> {
        self.plan.prices.iter().filter_map(|p| p.meter.as_ref())
    }
}

/// Every tenant's committed usage of the priced meters, per period: one
/// read per distinct period (the month's and the one before), whatever the
/// number of tenants.
struct Usage(HashMap<Period, HashMap<(String, String), Decimal>>);

impl Usage {
    async fn read(app: &App, due: &[Due]) -> ApiResult<Usage> {
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
            let totals = usage_totals(app, &meters, period.start_time(), period.end_time()).await?;
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
    async fn while_running(
        &self,
        app: &App,
        d: &Due,
        period: Period,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> ApiResult<UsageTotals> {
        let tenant = &d.sub.tenant_id;
        let mut counted = self.totals(period, tenant, &d.plan);
        if from > period.start_time() || to < period.end_time() {
            for (meter, q) in counted.iter_mut() {
                *q = usage_by_tenant(app, Some(std::slice::from_ref(tenant)), meter, from, to)
                    .await?
                    .remove(tenant)
                    .unwrap_or_default();
            }
        }
        Ok(counted)
    }

    /// `tenant`'s usage of each of `plan`'s meters over `period`.
    fn totals(&self, period: Period, tenant: &str, plan: &PlanVersion) -> UsageTotals {
        let of_period = self.0.get(&period);
        plan.prices
            .iter()
            .filter_map(|p| p.meter.clone())
            .map(|m| {
                let q = of_period
                    .and_then(|t| t.get(&(tenant.to_owned(), m.clone())))
                    .copied()
                    .unwrap_or_default();
                (m, q)
            })
            .collect()
    }
}

/// What exists already, read once rather than per subscription.
struct Known {
    /// The month's drafts by (subscription, period start).
    drafts: HashMap<(String, String), InvoiceRow>,
    /// The month's invoices past draft: they stay as they are.
    done: HashSet<(String, String)>,
    /// Invoices past draft of the previous periods, per subscription: what
    /// adjustments compare with (only an invoice of the closed period
    /// could also carry adjustments for the previous one, and a close
    /// leaves that invoice alone once it is past draft).
    settled: HashMap<String, Vec<InvoiceRow>>,
    /// Per subscription with a coupon, the periods it already discounted.
    discounted: HashMap<String, BTreeSet<String>>,
    /// Each tenant's reseller, for the finalization events.
    resellers: HashMap<String, Option<String>>,
    /// Tenants' tax jurisdictions and their rates.
    jurisdictions: Jurisdictions,
}

impl Known {
    async fn read(app: &App, due: &[Due]) -> ApiResult<Known> {
        let starts: BTreeSet<String> = due.iter().map(|d| d.period.start.to_string()).collect();
        let previous: BTreeSet<String> = due.iter().map(|d| d.previous.start.to_string()).collect();
        let with_coupon: Vec<String> = due
            .iter()
            .filter(|d| d.coupon.is_some())
            .map(|d| d.sub.id.clone())
            .collect();
        let tx = app.store.begin_system().await?;
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
        let rates = crate::store::tax::all(&tx).await?;
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

/// What a close writes for one subscription.
enum Write {
    /// A new draft.
    Insert(InvoiceRow),
    /// A draft whose amounts changed.
    Update(InvoiceRow),
    /// A draft that stays as it is (listed only when due to finalize).
    Keep(String),
}

struct Pending {
    write: Write,
    /// Past its grace: finalized in the same transaction.
    ripe: bool,
}

/// Rates one due subscription into what to write, if anything.
async fn rate(
    app: &App,
    req: &CloseRequest,
    d: &Due,
    usage: &Usage,
    known: &Known,
    report: &mut CloseReport,
) -> ApiResult<Option<Pending>> {
    if d.accrues_to < d.period.end_time() {
        report.cancelled_in_period += 1;
    }
    let key = (d.sub.id.clone(), d.period.start.to_string());
    // Past draft: nothing of it changes (late usage goes to the next).
    if known.done.contains(&key) {
        report.unchanged += 1;
        return Ok(None);
    }
    let existing = known.drafts.get(&key);
    // A trial ended or the subscription was cancelled inside the
    // period: only usage while it ran counts.
    let counted = usage
        .while_running(app, d, d.period, d.accrues_from, d.accrues_to)
        .await?;
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
    let history = known
        .settled
        .get(&d.sub.id)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if history
        .iter()
        .any(|r| rows::period_of(r).is_ok_and(|p| p == d.previous))
    {
        // Compared with what the previous invoice counted: from the
        // trial's end when it ended inside that period.
        let from = d
            .sub
            .trial_ends_at
            .map_or(d.previous.start_time(), |t| t.max(d.previous.start_time()));
        let counted = usage
            .while_running(app, d, d.previous, from, d.previous.end_time())
            .await?;
        lines.extend(adjustments(d, history, &counted)?);
    }
    // The subscription's own rate, else its tenant's jurisdiction's in
    // force on the period's last day.
    let last_day = d.period.end.pred_opt().unwrap_or(d.period.end);
    let tax = d
        .tax
        .clone()
        .or_else(|| known.jurisdictions.rate(&d.sub.tenant_id, last_day));
    let invoice = build_invoice(
        lines,
        d.plan.currency,
        Rounding::default(),
        coupon_for(d, known.discounted.get(&d.sub.id)),
        tax.as_ref(),
        Decimal::ZERO,
    );
    let ripe = req.now >= d.period.end_time() + req.grace;
    let write = match existing {
        None => Write::Insert(new_draft(d, &invoice, req.now)?),
        Some(row) => {
            let mut changed = row.clone();
            rows::set_amounts(&mut changed, &invoice)?;
            if changed != *row {
                Write::Update(changed)
            } else if ripe {
                Write::Keep(row.id.clone())
            } else {
                report.unchanged += 1;
                return Ok(None);
            }
        }
    };
    Ok(Some(Pending { write, ripe }))
}

/// Rates the due subscriptions and writes what they produce a chunk per
/// transaction, finalizing what is past its grace in the same transaction
/// (numbers drawn from the issuer's sequence there), then announces each
/// chunk's finalized invoices. Rating and writing overlap: a chunk goes to
/// Postgres while the next is rated. `progress(done, total)` counts
/// subscriptions, after each committed chunk.
#[allow(clippy::too_many_arguments)]
async fn rate_and_write(
    app: &App,
    req: &CloseRequest,
    due: &[Due],
    usage: &Usage,
    known: &Known,
    chunk: usize,
    progress: &(dyn Fn(usize, usize) + Sync),
    report: &mut CloseReport,
) -> ApiResult<()> {
    // Each message: a chunk to write, and how many subscriptions it covers.
    let (send, mut receive) = tokio::sync::mpsc::channel::<(Vec<Pending>, usize)>(2);
    let mut rated = CloseReport::default();
    let rating = async {
        let mut pending = Vec::with_capacity(chunk);
        let mut covered = 0;
        for (i, d) in due.iter().enumerate() {
            if let Some(p) = rate(app, req, d, usage, known, &mut rated).await? {
                pending.push(p);
            }
            covered += 1;
            // Every `chunk` subscriptions, whatever they left to write: the
            // progress moves even when most are unchanged.
            if covered == chunk {
                let full = std::mem::replace(&mut pending, Vec::with_capacity(chunk));
                send.send((full, std::mem::take(&mut covered)))
                    .await
                    .map_err(|_| ApiError::internal("the close's writer stopped"))?;
            }
            // Rating is CPU work in the writer's task: let the writer answer
            // Postgres between subscriptions now and then.
            if i % 64 == 63 {
                tokio::task::yield_now().await;
            }
        }
        if covered > 0 {
            send.send((pending, covered))
                .await
                .map_err(|_| ApiError::internal("the close's writer stopped"))?;
        }
        drop(send);
        Ok::<_, ApiError>(())
    };
    let mut written = CloseReport::default();
    let writing = async {
        let mut done = 0;
        while let Some((pending, covered)) = receive.recv().await {
            if !pending.is_empty() {
                write(app, req, &pending, &known.resellers, &mut written).await?;
            }
            done += covered;
            progress(done, due.len());
        }
        Ok::<_, ApiError>(())
    };
    tokio::try_join!(rating, writing)?;
    report.unchanged += rated.unchanged + written.unchanged;
    report.cancelled_in_period += rated.cancelled_in_period;
    report.drafted += written.drafted;
    report.updated += written.updated;
    report.finalized += written.finalized;
    Ok(())
}

/// Writes one chunk in one transaction, then announces what it finalized.
async fn write(
    app: &App,
    req: &CloseRequest,
    pending: &[Pending],
    resellers: &HashMap<String, Option<String>>,
    report: &mut CloseReport,
) -> ApiResult<()> {
    let started = std::time::Instant::now();
    let (written, direct) = match write_chunk(app, req, pending, true).await? {
        Some(written) => (written, true),
        // Another close wrote some of these invoices since this one read:
        // draft what is missing, then finalize whatever is there.
        None => match write_chunk(app, req, pending, false).await? {
            Some(written) => (written, false),
            None => return Err(ApiError::internal("a chunk could not be written")),
        },
    };
    report.drafted += written.drafted;
    report.updated += written.updated;
    report.unchanged += written.unchanged;
    report.finalized += written.finalized.len();
    let committed_at = started.elapsed();
    announce(app, req.now, written.finalized, resellers).await;
    tracing::debug!(
        invoices = pending.len(),
        direct,
        write_ms = committed_at.as_millis(),
        announce_ms = (started.elapsed() - committed_at).as_millis(),
        "chunk written"
    );
    Ok(())
}

/// What one committed chunk did.
#[derive(Default)]
struct Written {
    drafted: usize,
    updated: usize,
    unchanged: usize,
    finalized: Vec<FinalizedInvoice>,
}

/// One chunk in one transaction. `direct`: new invoices past their grace
/// are inserted already finalized (one write per invoice, not two); when
/// another close inserted any of them first, the transaction is rolled back
/// (its numbers with it) and `None` returned, for a retry without `direct`:
/// insert what is missing as drafts, then finalize the drafts there.
async fn write_chunk(
    app: &App,
    req: &CloseRequest,
    pending: &[Pending],
    direct: bool,
) -> ApiResult<Option<Written>> {
    let postgres = app.store.backend() == sea_orm::DbBackend::Postgres;
    let mut written = Written::default();
    let tx = app.store.begin_system().await?;
    // Every chunk takes the issuer's sequence first, before writing any
    // invoice: concurrent closes (the schedule runs in every process; the
    // CLI has its own clock and grace) queue there, one chunk at a time,
    // and never hold invoice rows the other waits for. A close alone pays
    // one row lock per chunk.
    rows::lock_sequence(&tx, PLATFORM_ISSUER).await?;
    let mut inserts: Vec<InvoiceRow> = Vec::new();
    let mut ripe_inserts: Vec<usize> = Vec::new();
    for p in pending {
        if let Write::Insert(row) = &p.write {
            if p.ripe {
                ripe_inserts.push(inserts.len());
            }
            inserts.push(row.clone());
        }
    }
    let mut ripe: Vec<String> = Vec::new();
    if direct && !ripe_inserts.is_empty() {
        let first = rows::reserve_numbers(&tx, PLATFORM_ISSUER, ripe_inserts.len()).await?;
        for (i, &at) in ripe_inserts.iter().enumerate() {
            let number = rows::invoice_number(PLATFORM_ISSUER, first + i as i64);
            let row = &mut inserts[at];
            rows::mark_finalized(row, number, req.now, NET_DAYS);
            written.finalized.push(rows::announced(row));
        }
    }
    let inserted = rows::insert_invoices(&tx, &inserts).await?;
    if direct && inserted < inserts.len() && !ripe_inserts.is_empty() {
        tx.rollback().await?;
        return Ok(None);
    }
    written.drafted = inserted;
    written.unchanged += inserts.len() - inserted;
    if !direct && !ripe_inserts.is_empty() {
        let pairs: Vec<(String, String)> = ripe_inserts
            .iter()
            .map(|&at| {
                let r = &inserts[at];
                (r.subscription_id.clone(), r.period_start.clone())
            })
            .collect();
        ripe.extend(rows::draft_ids_for(&tx, &pairs).await?);
    }

    // Updates in id order, the order finalization locks rows in.
    let mut updates: Vec<(&InvoiceRow, bool)> = pending
        .iter()
        .filter_map(|p| match &p.write {
            Write::Update(row) => Some((row, p.ripe)),
            _ => None,
        })
        .collect();
    updates.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    for (row, is_ripe) in updates {
        if rows::update_draft(&tx, row, req.now).await? {
            written.updated += 1;
        } else {
            written.unchanged += 1;
        }
        if is_ripe {
            ripe.push(row.id.clone());
        }
    }
    for p in pending {
        if let Write::Keep(id) = &p.write {
            written.unchanged += 1;
            ripe.push(id.clone());
        }
    }
    rows::apply_prepaid_credit(&tx, &written.finalized).await?;
    written.finalized.extend(
        rows::finalize_many(&tx, &ripe, PLATFORM_ISSUER, req.now, NET_DAYS, postgres).await?,
    );
    tx.commit().await?;
    Ok(Some(written))
}

/// Publishes `invoiceFinalized` for a committed chunk. The invoices are
/// final whatever the bus does: a subscriber may miss an event, never see
/// one for an invoice that is not.
async fn announce(
    app: &App,
    now: DateTime<Utc>,
    finalized: Vec<FinalizedInvoice>,
    resellers: &HashMap<String, Option<String>>,
) {
    use crate::events::{BusEvent, InvoiceFinalized};
    let events: Vec<BusEvent> = finalized
        .into_iter()
        .map(|row| {
            tracing::info!(invoice = %row.id, number = %row.number, tenant = %row.tenant_id, "invoice finalized");
            BusEvent::Invoice(InvoiceFinalized {
                reseller_id: resellers.get(&row.tenant_id).cloned().flatten(),
                invoice_id: row.id,
                tenant_id: row.tenant_id,
                number: row.number,
                total: row.total,
                currency: row.currency,
                finalized_at: now,
            })
        })
        .collect();
    if let Err(e) = app.bus.publish_all(&events).await {
        tracing::warn!(error = %e, count = events.len(), "invoiceFinalized not published");
    }
}

/// The coupon, while it has periods left: those already served are the
/// other periods whose settled invoices carry a discount.
fn coupon_for<'a>(
    d: &'a Due,
    discounted: Option<&BTreeSet<String>>,
) -> Option<&'a dotmac_billing::Coupon> {
    let c = d.coupon.as_ref()?;
    let this = d.period.start.to_string();
    let used = discounted
        .into_iter()
        .flatten()
        .filter(|start| **start != this)
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
        sub.updated_at = app.clock.now();
        rows::save_subscription(&tx, sub).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Adjustment lines for the previous period's finalized invoice when its
/// usage (`counted`, over the window that invoice counted) changed since
/// (usage of older periods is not re-read: the dedupe horizon and the
/// aggregator's time limits keep late events within about a month).
fn adjustments(
    d: &Due,
    history: &[InvoiceRow],
    counted: &UsageTotals,
) -> ApiResult<Vec<LineDraft>> {
    let mut all_lines = Vec::new();
    for row in history {
        all_lines.extend(rows::lines(row)?);
    }
    let billed = billed_quantities(all_lines.iter().map(|l| &l.kind), &d.previous);
    Ok(adjustment_lines(&d.plan, &d.previous, &billed, counted))
}

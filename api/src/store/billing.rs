//! Plan, subscription and invoice rows, and the per-issuer invoice number
//! sequence. Conversions between rows and the billing crate's types live
//! here, so the domain works with `PlanVersion`, `Invoice` and `Period`.

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use dotmac_billing::{Invoice, InvoiceLine, Period};
use dotmac_schema::money::Currency;
use dotmac_schema::price::{Interval, PlanVersion, Price};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryOrder, Set, Statement,
};

use super::entity::{
    credit_balance, credit_note, invoice, invoice_sequence, payment, plan, plan_change,
    subscription, subscription_pause,
};
use super::{fetch_page, owned_by_tenant_in, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};
use dotmac_schema::{InvoiceStatus, Scope, SubscriptionState};
use rust_decimal::Decimal;
use sea_orm::QuerySelect;

pub use invoice::Model as InvoiceRow;
pub use plan::Model as PlanRow;
pub use subscription::Model as SubscriptionRow;

/// Who issues invoices; numbers are gapless per issuer.
pub const PLATFORM_ISSUER: &str = "DM";

fn corrupt(what: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(format!("stored {what} is unreadable: {e}"))
}

/// The billing definition of a plan row.
pub fn plan_version(row: &PlanRow) -> ApiResult<PlanVersion> {
    let interval: Interval =
        serde_json::from_value(serde_json::Value::String(row.billing_interval.clone()))
            .map_err(|e| corrupt("plan interval", e))?;
    let prices: Vec<Price> =
        serde_json::from_str(&row.prices).map_err(|e| corrupt("plan prices", e))?;
    Ok(PlanVersion {
        plan: row.slug.clone(),
        version: u32::try_from(row.version).map_err(|e| corrupt("plan version", e))?,
        currency: Currency::from_code(&row.currency).map_err(|e| corrupt("plan currency", e))?,
        interval,
        trial_days: u32::try_from(row.trial_days).map_err(|e| corrupt("trial days", e))?,
        prices,
    })
}

/// A plan row for a checked definition.
pub fn plan_row(
    id: String,
    name: String,
    plan: &PlanVersion,
    now: DateTime<Utc>,
) -> ApiResult<PlanRow> {
    let interval = serde_json::to_value(plan.interval).map_err(|e| corrupt("interval", e))?;
    Ok(PlanRow {
        id,
        slug: plan.plan.clone(),
        version: i32::try_from(plan.version).map_err(|e| corrupt("version", e))?,
        name,
        currency: plan.currency.code().to_owned(),
        billing_interval: interval.as_str().unwrap_or_default().to_owned(),
        trial_days: i32::try_from(plan.trial_days).map_err(|e| corrupt("trial days", e))?,
        prices: serde_json::to_string(&plan.prices).map_err(|e| corrupt("prices", e))?,
        created_at: now,
    })
}

pub async fn insert_plan(tx: &Tx, row: PlanRow) -> ApiResult<PlanRow> {
    plan::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                ApiError::conflict("input.version", "this plan version already exists")
            } else {
                e.into()
            }
        })
}

pub async fn all_plans(tx: &Tx) -> ApiResult<Vec<PlanRow>> {
    Ok(plan::Entity::find()
        .order_by_asc(plan::Column::Slug)
        .order_by_asc(plan::Column::Version)
        .all(tx)
        .await?)
}

pub async fn insert_subscription(tx: &Tx, row: SubscriptionRow) -> ApiResult<SubscriptionRow> {
    subscription::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                ApiError::conflict(
                    "input.tenantId",
                    "the tenant already has a live subscription",
                )
            } else {
                e.into()
            }
        })
}

/// Every subscription (system scope: the close decides which to bill).
pub async fn all_subscriptions(tx: &Tx) -> ApiResult<Vec<SubscriptionRow>> {
    Ok(subscription::Entity::find()
        .order_by_asc(subscription::Column::Id)
        .all(tx)
        .await?)
}

/// Every subscription in `scope`.
pub async fn subscriptions_in(tx: &Tx, scope: &Scope) -> ApiResult<Vec<SubscriptionRow>> {
    Ok(subscription::Entity::find()
        .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
        .order_by_asc(subscription::Column::Id)
        .all(tx)
        .await?)
}

pub use plan_change::Model as PlanChangeRow;
pub use subscription_pause::Model as PauseRow;

/// Every pause, oldest first (system scope).
pub async fn pauses(tx: &Tx) -> ApiResult<Vec<PauseRow>> {
    Ok(subscription_pause::Entity::find()
        .order_by_asc(subscription_pause::Column::PausedAt)
        .all(tx)
        .await?)
}

pub async fn insert_pause(tx: &Tx, row: PauseRow) -> ApiResult<PauseRow> {
    Ok(subscription_pause::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

/// Ends the open pause of a subscription at `at`.
pub async fn end_pause(tx: &Tx, subscription_id: &str, at: DateTime<Utc>) -> ApiResult<()> {
    subscription_pause::Entity::update_many()
        .col_expr(subscription_pause::Column::ResumedAt, Expr::value(at))
        .filter(subscription_pause::Column::SubscriptionId.eq(subscription_id))
        .filter(subscription_pause::Column::ResumedAt.is_null())
        .exec(tx)
        .await?;
    Ok(())
}

/// Every plan change, oldest first.
pub async fn plan_changes(tx: &Tx) -> ApiResult<Vec<PlanChangeRow>> {
    Ok(plan_change::Entity::find()
        .order_by_asc(plan_change::Column::ChangedAt)
        .all(tx)
        .await?)
}

pub async fn insert_plan_change(tx: &Tx, row: PlanChangeRow) -> ApiResult<PlanChangeRow> {
    Ok(plan_change::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

/// A subscription's JSON terms (tax, coupon), if set.
pub fn terms<T: serde::de::DeserializeOwned>(
    json: &Option<String>,
    what: &str,
) -> ApiResult<Option<T>> {
    json.as_deref()
        .map(|j| serde_json::from_str(j).map_err(|e| corrupt(what, e)))
        .transpose()
}

pub async fn get_subscription(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<SubscriptionRow> {
    subscription::Entity::find_by_id(id)
        .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("subscription"))
}

pub async fn save_subscription(tx: &Tx, row: SubscriptionRow) -> ApiResult<SubscriptionRow> {
    Ok(subscription::ActiveModel::from(row)
        .reset_all()
        .update(tx)
        .await?)
}

/// Trials that ended by `now` become active; returns how many.
pub async fn activate_ended_trials(tx: &Tx, now: DateTime<Utc>) -> ApiResult<u64> {
    let res = subscription::Entity::update_many()
        .col_expr(
            subscription::Column::State,
            Expr::value(SubscriptionState::Active),
        )
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
        .filter(subscription::Column::State.eq(SubscriptionState::Trial))
        .filter(subscription::Column::TrialEndsAt.lte(now))
        .exec(tx)
        .await?;
    Ok(res.rows_affected)
}

/// Moves a subscription from state `from` to `to` at `now`, only if it is
/// still in `from`.
pub async fn move_subscription_state(
    tx: &Tx,
    id: &str,
    from: SubscriptionState,
    to: SubscriptionState,
    now: DateTime<Utc>,
) -> ApiResult<()> {
    subscription::Entity::update_many()
        .col_expr(subscription::Column::State, Expr::value(to))
        .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
        .filter(subscription::Column::Id.eq(id))
        .filter(subscription::Column::State.eq(from))
        .exec(tx)
        .await?;
    Ok(())
}

/// Every subscription not cancelled (in the transaction's scope).
pub async fn live_subscriptions(tx: &Tx) -> ApiResult<Vec<SubscriptionRow>> {
    Ok(subscription::Entity::find()
        .filter(subscription::Column::State.ne(SubscriptionState::Cancelled))
        .order_by_asc(subscription::Column::Id)
        .all(tx)
        .await?)
}

pub fn anchor(row: &SubscriptionRow) -> ApiResult<NaiveDate> {
    row.anchor_date
        .parse()
        .map_err(|e| corrupt("subscription anchor", e))
}

/// The subscription's invoice for the period starting at `start`, if any.
pub async fn invoice_for(
    tx: &Tx,
    subscription_id: &str,
    start: NaiveDate,
) -> ApiResult<Option<InvoiceRow>> {
    Ok(invoice::Entity::find()
        .filter(invoice::Column::SubscriptionId.eq(subscription_id))
        .filter(invoice::Column::PeriodStart.eq(start.to_string()))
        .one(tx)
        .await?)
}

/// The subscription's finalized invoices, in finalization order.
pub async fn finalized_invoices(tx: &Tx, subscription_id: &str) -> ApiResult<Vec<InvoiceRow>> {
    Ok(invoice::Entity::find()
        .filter(invoice::Column::SubscriptionId.eq(subscription_id))
        .filter(invoice::Column::Status.ne(InvoiceStatus::Draft))
        .order_by_asc(invoice::Column::FinalizedAt)
        .all(tx)
        .await?)
}

pub fn lines(row: &InvoiceRow) -> ApiResult<Vec<InvoiceLine>> {
    serde_json::from_str(&row.lines).map_err(|e| corrupt("invoice lines", e))
}

pub fn period_of(row: &InvoiceRow) -> ApiResult<Period> {
    Ok(Period {
        start: row
            .period_start
            .parse()
            .map_err(|e| corrupt("invoice period", e))?,
        end: row
            .period_end
            .parse()
            .map_err(|e| corrupt("invoice period", e))?,
    })
}

/// Sets a draft row's amounts and lines from `invoice`.
pub fn set_amounts(row: &mut InvoiceRow, invoice: &Invoice) -> ApiResult<()> {
    row.currency = invoice.currency.code().to_owned();
    row.subtotal = invoice.subtotal.to_string();
    row.discount = invoice.discount.to_string();
    row.tax = invoice.tax.to_string();
    row.total = invoice.total.to_string();
    row.amount_due = invoice.amount_due.to_string();
    row.lines = serde_json::to_string(&invoice.lines).map_err(|e| corrupt("lines", e))?;
    Ok(())
}

/// Updates a draft's amounts; `false` when it is no longer a draft.
pub async fn update_draft(tx: &Tx, row: &InvoiceRow, now: DateTime<Utc>) -> ApiResult<bool> {
    let res = invoice::Entity::update_many()
        .col_expr(invoice::Column::Subtotal, Expr::value(row.subtotal.clone()))
        .col_expr(invoice::Column::Discount, Expr::value(row.discount.clone()))
        .col_expr(invoice::Column::Tax, Expr::value(row.tax.clone()))
        .col_expr(invoice::Column::Total, Expr::value(row.total.clone()))
        .col_expr(
            invoice::Column::AmountDue,
            Expr::value(row.amount_due.clone()),
        )
        .col_expr(invoice::Column::Lines, Expr::value(row.lines.clone()))
        .col_expr(invoice::Column::UpdatedAt, Expr::value(now))
        .filter(invoice::Column::Id.eq(row.id.as_str()))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .exec(tx)
        .await?;
    Ok(res.rows_affected == 1)
}

/// The issuer's next number, in `tx` (see [`reserve_numbers`]).
pub async fn next_number(tx: &Tx, issuer: &str) -> ApiResult<String> {
    let n = reserve_numbers(tx, issuer, 1).await?;
    Ok(invoice_number(issuer, n))
}

/// Uses the tenant's prepaid credit on a just-finalized invoice.
async fn apply_credit_balance(tx: &Tx, invoice_id: &str) -> ApiResult<()> {
    let Some(mut row) = invoice::Entity::find_by_id(invoice_id).one(tx).await? else {
        return Ok(());
    };
    let balance = lock_credit_balance(tx, &row.tenant_id, &row.currency).await?;
    let due = dec(&row.amount_due)?;
    let used = balance.min(due).max(Decimal::ZERO);
    if used.is_zero() {
        return Ok(());
    }
    set_credit_balance(tx, &row.tenant_id, &row.currency, balance - used).await?;
    row.credit_applied = (dec(&row.credit_applied)? + used).to_string();
    row.amount_due = (due - used).to_string();
    if (due - used).is_zero() {
        row.status = InvoiceStatus::Paid;
    }
    invoice::ActiveModel::from(row)
        .reset_all()
        .update(tx)
        .await?;
    Ok(())
}

pub fn dec(text: &str) -> ApiResult<Decimal> {
    text.parse().map_err(|e| corrupt("amount", e))
}

/// An invoice in `scope`, locked for update until `tx` ends (a row lock on
/// Postgres; SQLite has one writer at a time).
pub async fn lock_invoice(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<InvoiceRow> {
    let mut q = invoice::Entity::find_by_id(id)
        .filter(owned_by_tenant_in(scope, invoice::Column::TenantId));
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    q.one(tx).await?.ok_or(ApiError::not_found("invoice"))
}

pub async fn save_invoice(tx: &Tx, row: InvoiceRow) -> ApiResult<InvoiceRow> {
    Ok(invoice::ActiveModel::from(row)
        .reset_all()
        .update(tx)
        .await?)
}

/// The tenant's prepaid credit in `currency`.
pub async fn credit_balance(tx: &Tx, tenant_id: &str, currency: &str) -> ApiResult<Decimal> {
    match credit_balance::Entity::find_by_id((tenant_id.to_owned(), currency.to_owned()))
        .one(tx)
        .await?
    {
        Some(row) => dec(&row.balance),
        None => Ok(Decimal::ZERO),
    }
}

/// Adds `delta` to the tenant's prepaid credit in `currency`, on the
/// balance as locked in `tx`.
pub async fn add_credit_balance(
    tx: &Tx,
    tenant_id: &str,
    currency: &str,
    delta: Decimal,
) -> ApiResult<()> {
    if delta.is_zero() {
        return Ok(());
    }
    let balance = lock_credit_balance(tx, tenant_id, currency).await?;
    set_credit_balance(tx, tenant_id, currency, balance + delta).await
}

/// The tenant's prepaid credit in `currency`, locked until `tx` ends.
/// Whatever adds to or draws on a balance reads it here: two payments that
/// each move an excess to credit at once queue on the row, where reading
/// it unlocked let the later write drop the earlier one's sum (tested).
/// On Postgres the row is created first if missing, so there is always a
/// row to lock; SQLite has one writer at a time.
async fn lock_credit_balance(tx: &Tx, tenant_id: &str, currency: &str) -> ApiResult<Decimal> {
    let key = (tenant_id.to_owned(), currency.to_owned());
    if tx.get_database_backend() != DbBackend::Postgres {
        return credit_balance(tx, tenant_id, currency).await;
    }
    credit_balance::Entity::insert(credit_balance::ActiveModel {
        tenant_id: Set(key.0.clone()),
        currency: Set(key.1.clone()),
        balance: Set("0".into()),
    })
    .on_conflict(
        OnConflict::columns([
            credit_balance::Column::TenantId,
            credit_balance::Column::Currency,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    let row = credit_balance::Entity::find_by_id(key)
        .lock_exclusive()
        .one(tx)
        .await?
        .ok_or_else(|| ApiError::internal("a credit balance vanished while locked"))?;
    dec(&row.balance)
}

/// Writes the tenant's prepaid credit (locked by [`lock_credit_balance`]).
async fn set_credit_balance(
    tx: &Tx,
    tenant_id: &str,
    currency: &str,
    balance: Decimal,
) -> ApiResult<()> {
    let updated = credit_balance::Entity::update_many()
        .col_expr(
            credit_balance::Column::Balance,
            Expr::value(balance.to_string()),
        )
        .filter(credit_balance::Column::TenantId.eq(tenant_id))
        .filter(credit_balance::Column::Currency.eq(currency))
        .exec(tx)
        .await?;
    if updated.rows_affected == 0 {
        credit_balance::ActiveModel {
            tenant_id: Set(tenant_id.to_owned()),
            currency: Set(currency.to_owned()),
            balance: Set(balance.to_string()),
        }
        .insert(tx)
        .await?;
    }
    Ok(())
}

pub use credit_note::Model as CreditNoteRow;
pub use payment::Model as PaymentRow;

pub async fn credit_notes_of(tx: &Tx, invoice_id: &str) -> ApiResult<Vec<CreditNoteRow>> {
    Ok(credit_note::Entity::find()
        .filter(credit_note::Column::InvoiceId.eq(invoice_id))
        .order_by_asc(credit_note::Column::Number)
        .all(tx)
        .await?)
}

pub async fn payments_of(tx: &Tx, invoice_id: &str) -> ApiResult<Vec<PaymentRow>> {
    Ok(payment::Entity::find()
        .filter(payment::Column::InvoiceId.eq(invoice_id))
        .order_by_asc(payment::Column::ReceivedAt)
        .all(tx)
        .await?)
}

pub async fn payment_by_reference(tx: &Tx, reference: &str) -> ApiResult<Option<PaymentRow>> {
    Ok(payment::Entity::find()
        .filter(payment::Column::Reference.eq(reference))
        .one(tx)
        .await?)
}

pub async fn insert_credit_note(tx: &Tx, row: CreditNoteRow) -> ApiResult<CreditNoteRow> {
    Ok(credit_note::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

pub async fn insert_payment(tx: &Tx, row: PaymentRow) -> ApiResult<PaymentRow> {
    Ok(payment::ActiveModel::from(row)
        .reset_all()
        .insert(tx)
        .await?)
}

/// Finalized invoices still owing something (for dunning), system scope.
pub async fn open_invoices(tx: &Tx) -> ApiResult<Vec<InvoiceRow>> {
    Ok(invoice::Entity::find()
        .filter(
            invoice::Column::Status.is_in([InvoiceStatus::Finalized, InvoiceStatus::Uncollectible]),
        )
        .all(tx)
        .await?)
}

pub async fn get_plan(tx: &Tx, id: &str) -> ApiResult<PlanRow> {
    plan::Entity::find_by_id(id)
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("plan"))
}

/// Plans visible in `scope`: the whole catalogue for the platform; for a
/// tenant or a reseller, the plans its subscriptions use (a plan may carry
/// one customer's negotiated prices).
pub async fn list_plans(tx: &Tx, scope: &Scope, page: PageRequest<'_>) -> ApiResult<Page<PlanRow>> {
    let mut q = plan::Entity::find();
    if !matches!(scope, Scope::All) {
        let used: Vec<String> = subscription::Entity::find()
            .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
            .all(tx)
            .await?
            .into_iter()
            .map(|s| s.plan_id)
            .collect();
        q = q.filter(plan::Column::Id.is_in(used));
    }
    fetch_page(tx, q, plan::Column::Id, page).await
}

/// A plan visible in `scope` (see [`list_plans`]), or NOT_FOUND.
pub async fn get_plan_in(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<PlanRow> {
    let row = get_plan(tx, id).await?;
    if !matches!(scope, Scope::All) {
        let used = subscription::Entity::find()
            .filter(owned_by_tenant_in(scope, subscription::Column::TenantId))
            .filter(subscription::Column::PlanId.eq(id))
            .one(tx)
            .await?;
        if used.is_none() {
            return Err(ApiError::not_found("plan"));
        }
    }
    Ok(row)
}

pub async fn list_subscriptions(
    tx: &Tx,
    scope: &Scope,
    tenant_id: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<SubscriptionRow>> {
    let mut q = subscription::Entity::find()
        .filter(owned_by_tenant_in(scope, subscription::Column::TenantId));
    if let Some(t) = tenant_id {
        q = q.filter(subscription::Column::TenantId.eq(t));
    }
    fetch_page(tx, q, subscription::Column::Id, page).await
}

pub async fn list_invoices(
    tx: &Tx,
    scope: &Scope,
    tenant_id: Option<&str>,
    page: PageRequest<'_>,
) -> ApiResult<Page<InvoiceRow>> {
    let mut q =
        invoice::Entity::find().filter(owned_by_tenant_in(scope, invoice::Column::TenantId));
    if let Some(t) = tenant_id {
        q = q.filter(invoice::Column::TenantId.eq(t));
    }
    fetch_page(tx, q, invoice::Column::Id, page).await
}

/// An invoice visible in `scope`, or NOT_FOUND.
pub async fn get_invoice(tx: &Tx, scope: &Scope, id: &str) -> ApiResult<InvoiceRow> {
    invoice::Entity::find_by_id(id)
        .filter(owned_by_tenant_in(scope, invoice::Column::TenantId))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("invoice"))
}

/// Draft invoices of the periods starting on `starts` (YYYY-MM-DD),
/// system scope: what a close may rewrite.
pub async fn drafts_starting(
    tx: &Tx,
    starts: &std::collections::BTreeSet<String>,
) -> ApiResult<Vec<InvoiceRow>> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(invoice::Entity::find()
        .filter(invoice::Column::PeriodStart.is_in(starts.iter().cloned()))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .all(tx)
        .await?)
}

/// `(subscription, period start)` of the invoices past draft of the
/// periods starting on `starts`: a close only needs to know they exist,
/// not their lines.
pub async fn settled_keys_starting(
    tx: &Tx,
    starts: &std::collections::BTreeSet<String>,
) -> ApiResult<Vec<(String, String)>> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(invoice::Entity::find()
        .select_only()
        .columns([
            invoice::Column::SubscriptionId,
            invoice::Column::PeriodStart,
        ])
        .filter(invoice::Column::PeriodStart.is_in(starts.iter().cloned()))
        .filter(invoice::Column::Status.ne(InvoiceStatus::Draft))
        .into_tuple()
        .all(tx)
        .await?)
}

/// Invoices past draft of the periods starting on `starts` (system
/// scope): a close's adjustments compare them with the rollups.
pub async fn settled_invoices_starting(
    tx: &Tx,
    starts: &std::collections::BTreeSet<String>,
) -> ApiResult<Vec<InvoiceRow>> {
    if starts.is_empty() {
        return Ok(Vec::new());
    }
    Ok(invoice::Entity::find()
        .filter(invoice::Column::PeriodStart.is_in(starts.iter().cloned()))
        .filter(invoice::Column::Status.ne(InvoiceStatus::Draft))
        .order_by_asc(invoice::Column::FinalizedAt)
        .all(tx)
        .await?)
}

/// The periods (start dates) of each subscription's invoices past draft
/// that carry a discount: how many periods a coupon has already served.
pub async fn discounted_periods(
    tx: &Tx,
    subscription_ids: &[String],
) -> ApiResult<Vec<(String, String)>> {
    let columns = [
        invoice::Column::SubscriptionId,
        invoice::Column::PeriodStart,
        invoice::Column::Discount,
    ];
    let settled = invoice::Column::Status.ne(InvoiceStatus::Draft);
    let mut out = Vec::new();
    for (sub, start, discount) in columns_of(tx, subscription_ids, columns, settled).await? {
        if !dec(&discount)?.is_zero() {
            out.push((sub, start));
        }
    }
    Ok(out)
}

/// The ids of the drafts of these (subscription, period start) pairs.
pub async fn draft_ids_for(tx: &Tx, pairs: &[(String, String)]) -> ApiResult<Vec<String>> {
    let wanted: std::collections::HashSet<&(String, String)> = pairs.iter().collect();
    let subscriptions: Vec<String> = pairs.iter().map(|(s, _)| s.clone()).collect();
    let columns = [
        invoice::Column::Id,
        invoice::Column::SubscriptionId,
        invoice::Column::PeriodStart,
    ];
    let drafts = invoice::Column::Status.eq(InvoiceStatus::Draft);
    Ok(columns_of(tx, &subscriptions, columns, drafts)
        .await?
        .into_iter()
        .filter(|(_, sub, start)| wanted.contains(&(sub.clone(), start.clone())))
        .map(|(id, ..)| id)
        .collect())
}

/// Three text columns of the invoices of `subscription_ids` that match
/// `filter`, read in bounded IN lists (SQLite allows 32,766 parameters per
/// statement).
async fn columns_of(
    tx: &Tx,
    subscription_ids: &[String],
    columns: [invoice::Column; 3],
    filter: sea_orm::sea_query::SimpleExpr,
) -> ApiResult<Vec<(String, String, String)>> {
    let mut out = Vec::new();
    for chunk in subscription_ids.chunks(10_000) {
        let rows: Vec<(String, String, String)> = invoice::Entity::find()
            .select_only()
            .columns(columns)
            .filter(invoice::Column::SubscriptionId.is_in(chunk.iter().cloned()))
            .filter(filter.clone())
            .into_tuple()
            .all(tx)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}

/// Inserts a close's new invoices (drafts, or finalized past their grace),
/// skipping those another close inserted first (they meet on the unique
/// period key); returns how many were written.
pub async fn insert_invoices(tx: &Tx, drafts: &[InvoiceRow]) -> ApiResult<usize> {
    if drafts.is_empty() {
        return Ok(0);
    }
    if tx.get_database_backend() == DbBackend::Postgres {
        let res = tx.execute(unnest_insert(drafts)?).await?;
        return Ok(usize::try_from(res.rows_affected()).unwrap_or(usize::MAX));
    }
    let written = invoice::Entity::insert_many(
        drafts
            .iter()
            .cloned()
            .map(|r| invoice::ActiveModel::from(r).reset_all()),
    )
    .on_conflict(
        OnConflict::columns([
            invoice::Column::SubscriptionId,
            invoice::Column::PeriodStart,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    Ok(usize::try_from(written).unwrap_or(usize::MAX))
}

/// The Postgres insert of `rows` as one text array per column that the
/// server unnests: 23 binary binds for the whole chunk, where one JSON
/// parameter made Postgres parse (and the client escape) every invoice's
/// lines a second time, and a bind per value would pass 65,535 at 2,849
/// rows. Columns come from the entity, so a new one cannot be left out.
/// An array bound through sea-query cannot hold NULL, so an optional
/// column sends '' for none and reads it back through NULLIF.
fn unnest_insert(rows: &[InvoiceRow]) -> ApiResult<Statement> {
    use sea_orm::sea_query::{ArrayType, Value};
    use sea_orm::{Iterable, ModelTrait};
    let mut names = Vec::new();
    let mut selects = Vec::new();
    let mut arrays = Vec::new();
    for (i, column) in invoice::Column::iter().enumerate() {
        let name = sea_orm::IdenStatic::as_str(&column).to_owned();
        let mut timestamp = false;
        let mut cells = Vec::with_capacity(rows.len());
        for row in rows {
            let text = match row.get(column) {
                Value::String(Some(text)) if text.is_empty() && column.def().is_null() => {
                    return Err(ApiError::internal(format!(
                        "invoice column {name} cannot be sent empty"
                    )))
                }
                Value::String(text) => text.map(|t| *t).unwrap_or_default(),
                Value::ChronoDateTimeUtc(at) => {
                    timestamp = true;
                    at.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
                        .unwrap_or_default()
                }
                other => {
                    return Err(ApiError::internal(format!(
                        "invoice column {name} has an unexpected type: {other:?}"
                    )))
                }
            };
            cells.push(Value::String(Some(Box::new(text))));
        }
        let mut select = format!("c{i}");
        if column.def().is_null() {
            select = format!("NULLIF({select}, '')");
        }
        if timestamp {
            select = format!("{select}::timestamptz");
        }
        names.push(name);
        selects.push(select);
        arrays.push(Value::Array(ArrayType::String, Some(Box::new(cells))));
    }
    let params: Vec<String> = (1..=arrays.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let aliases: Vec<String> = (0..arrays.len()).map(|i| format!("c{i}")).collect();
    let sql = format!(
        "INSERT INTO invoices ({}) SELECT {} FROM unnest({}) AS r({}) \
         ON CONFLICT (subscription_id, period_start) DO NOTHING",
        names.join(", "),
        selects.join(", "),
        params.join(", "),
        aliases.join(", ")
    );
    Ok(Statement::from_sql_and_values(
        DbBackend::Postgres,
        sql,
        arrays,
    ))
}

/// What a finalized invoice is announced with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinalizedInvoice {
    pub id: String,
    pub tenant_id: String,
    pub number: String,
    pub total: String,
    pub currency: String,
}

/// Finalizes the drafts among `ids` in `tx`: locks them (in id order; a
/// close holds the issuer's sequence already, see `domain::close`), draws
/// exactly as many numbers as it
/// finalizes from the issuer's sequence, applies prepaid credit, and
/// returns what to announce. Invoices no longer drafts (another close
/// won) draw no number: the sequence stays gapless.
pub async fn finalize_many(
    tx: &Tx,
    ids: &[String],
    issuer: &str,
    now: DateTime<Utc>,
    net_days: i64,
) -> ApiResult<Vec<FinalizedInvoice>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    // Only the columns an announcement needs: the lines stay in the table.
    let mut q = invoice::Entity::find()
        .select_only()
        .columns([
            invoice::Column::Id,
            invoice::Column::TenantId,
            invoice::Column::Total,
            invoice::Column::Currency,
        ])
        .filter(invoice::Column::Id.is_in(ids.iter().cloned()))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .order_by_asc(invoice::Column::Id);
    if tx.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    let drafts: Vec<(String, String, String, String)> = q.into_tuple().all(tx).await?;
    if drafts.is_empty() {
        return Ok(Vec::new());
    }
    let first = reserve_numbers(tx, issuer, drafts.len()).await?;
    // One statement for the chunk: each id gets its number by a CASE. The
    // ids and numbers are ours (checked to be [A-Za-z0-9_-]), so they are
    // safe as literals.
    let safe = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    };
    let mut out = Vec::with_capacity(drafts.len());
    let mut case = String::from("CASE id");
    for (i, (id, tenant_id, total, currency)) in drafts.into_iter().enumerate() {
        let number = invoice_number(issuer, first + i as i64);
        if !safe(&id) || !safe(&number) {
            return Err(ApiError::internal(format!("unexpected invoice id {id:?}")));
        }
        case.push_str(&format!(" WHEN '{id}' THEN '{number}'"));
        out.push(FinalizedInvoice {
            id,
            tenant_id,
            number,
            total,
            currency,
        });
    }
    case.push_str(" END");
    let updated = invoice::Entity::update_many()
        .col_expr(
            invoice::Column::Status,
            Expr::value(InvoiceStatus::Finalized),
        )
        .col_expr(invoice::Column::Number, Expr::cust(case))
        .col_expr(invoice::Column::FinalizedAt, Expr::value(now))
        .col_expr(
            invoice::Column::DueAt,
            Expr::value(now + TimeDelta::days(net_days)),
        )
        .col_expr(invoice::Column::UpdatedAt, Expr::value(now))
        .filter(invoice::Column::Id.is_in(out.iter().map(|r| r.id.clone())))
        .filter(invoice::Column::Status.eq(InvoiceStatus::Draft))
        .exec(tx)
        .await?;
    if updated.rows_affected != out.len() as u64 {
        // The rows are locked (or the writer serialized): cannot happen.
        return Err(ApiError::internal(
            "finalizing a chunk changed an unexpected number of rows",
        ));
    }
    apply_prepaid_credit(tx, &out).await?;
    Ok(out)
}

/// Uses prepaid credit on just-finalized invoices, for the tenants that
/// have some.
pub async fn apply_prepaid_credit(tx: &Tx, finalized: &[FinalizedInvoice]) -> ApiResult<()> {
    if finalized.is_empty() {
        return Ok(());
    }
    let tenants: Vec<String> = finalized.iter().map(|r| r.tenant_id.clone()).collect();
    let with_credit: std::collections::HashSet<String> = credit_balance::Entity::find()
        .filter(credit_balance::Column::TenantId.is_in(tenants))
        .all(tx)
        .await?
        .into_iter()
        .filter(|b| dec(&b.balance).is_ok_and(|v| v > Decimal::ZERO))
        .map(|b| b.tenant_id)
        .collect();
    for row in finalized
        .iter()
        .filter(|r| with_credit.contains(&r.tenant_id))
    {
        apply_credit_balance(tx, &row.id).await?;
    }
    Ok(())
}

/// An invoice number as printed: the issuer and six digits at least.
pub fn invoice_number(issuer: &str, n: i64) -> String {
    format!("{issuer}-{n:06}")
}

/// Makes a new row finalized with `number` as of `now` (due after
/// `net_days`), for an insert that finalizes in one write.
pub fn mark_finalized(row: &mut InvoiceRow, number: String, now: DateTime<Utc>, net_days: i64) {
    row.status = InvoiceStatus::Finalized;
    row.number = Some(number);
    row.finalized_at = Some(now);
    row.due_at = Some(now + TimeDelta::days(net_days));
    row.updated_at = now;
}

/// What announcing `row`'s finalization says.
pub fn announced(row: &InvoiceRow) -> FinalizedInvoice {
    FinalizedInvoice {
        id: row.id.clone(),
        tenant_id: row.tenant_id.clone(),
        number: row.number.clone().unwrap_or_default(),
        total: row.total.clone(),
        currency: row.currency.clone(),
    }
}

/// Locks the issuer's number sequence (creating it) until `tx` ends.
pub async fn lock_sequence(tx: &Tx, issuer: &str) -> ApiResult<()> {
    reserve_numbers(tx, issuer, 0).await.map(|_| ())
}

/// Reserves `n` consecutive numbers of the issuer and returns the first.
/// The sequence row stays locked until `tx` ends (Postgres row lock;
/// SQLite serializes writers), so a rolled-back transaction gives its
/// numbers back and numbers stay gapless.
pub async fn reserve_numbers(tx: &Tx, issuer: &str, n: usize) -> ApiResult<i64> {
    // Bound as a 32-bit integer: Postgres types `bigint + $1` as int4.
    let n = i32::try_from(n).map_err(|e| ApiError::internal(e.to_string()))?;
    invoice_sequence::Entity::insert(invoice_sequence::ActiveModel {
        issuer: Set(issuer.to_owned()),
        next_number: Set(1),
    })
    .on_conflict(
        OnConflict::column(invoice_sequence::Column::Issuer)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(tx)
    .await?;
    invoice_sequence::Entity::update_many()
        .col_expr(
            invoice_sequence::Column::NextNumber,
            Expr::col(invoice_sequence::Column::NextNumber).add(n),
        )
        .filter(invoice_sequence::Column::Issuer.eq(issuer))
        .exec(tx)
        .await?;
    let next = invoice_sequence::Entity::find_by_id(issuer)
        .one(tx)
        .await?
        .ok_or_else(|| ApiError::internal("invoice sequence row vanished"))?
        .next_number;
    Ok(next - i64::from(n))
}

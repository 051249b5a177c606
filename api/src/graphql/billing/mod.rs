//! Billing's GraphQL: plans, subscriptions, tax rates, invoices with their
//! settlement (credit notes, payments, void), the period close and its
//! reconciliation, and finalized invoices as a subscription. Views are in
//! [`views`], inputs and their validation in [`inputs`].

pub mod inputs;
pub mod views;

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, Subscription, ID};
use dotmac_schema::{InvoiceId, InvoiceStatus, PaymentMethod, PlanId, SubscriptionId};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::{connection, covers, ctx, page_request, tenant_in_scope, token_expiry, Result};
use crate::bus::BusEvent;
use crate::error::ApiError;
use crate::service::billing::close::close_as;
use crate::service::billing::reconcile::reconcile_as;
use crate::service::billing::settlement;
use crate::service::billing::{plans, subscriptions, taxes};
use crate::service::parse_id;
use crate::store::billing_rows;
use inputs::{
    CreateCreditNoteInput, CreatePlanInput, CreateTaxRateInput, RecordPaymentInput, SubscribeInput,
};
use views::{
    CloseReport, CreditNote, Invoice, InvoiceFinalized, Payment, Plan, Reconciliation,
    Subscription as SubscriptionView, TaxRate,
};

#[derive(Default)]
pub struct BillingQuery;

#[Object]
impl BillingQuery {
    /// Tax rates per jurisdiction, optionally of one (platform admins).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn tax_rates(
        &self,
        gctx: &Context<'_>,
        jurisdiction: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, TaxRate>> {
        let (app, rc) = ctx(gctx);
        let page = page_request::<dotmac_schema::TaxRateId>(first, after.as_deref())?;
        let rows = taxes::list_tax_rates(&app.billing, rc, jurisdiction.as_deref(), page).await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), TaxRate))
    }

    /// Plan versions: the whole catalogue for the platform; for tenants
    /// and resellers, the plans their subscriptions use.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn plans(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Plan>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<PlanId>(first, after.as_deref())?;
        let tx = app.store.begin(&p.scope).await?;
        let rows = billing_rows::list_plans(&tx, &p.scope, page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), Plan))
    }

    async fn plan(&self, gctx: &Context<'_>, id: ID) -> Result<Plan> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: PlanId = parse_id("id", &id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = billing_rows::get_plan_in(&tx, &p.scope, id.as_str()).await?;
        tx.commit().await?;
        Ok(Plan(row))
    }

    /// Subscriptions in the caller's scope, optionally of one tenant.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn subscriptions(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        tenant_id: Option<ID>,
    ) -> Result<Connection<String, SubscriptionView>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<SubscriptionId>(first, after.as_deref())?;
        let tenant = tenant_in_scope(app, &p.scope, tenant_id.as_ref().map(|t| t.as_str())).await?;
        let tx = app.store.begin(&p.scope).await?;
        let rows = billing_rows::list_subscriptions(&tx, &p.scope, tenant.as_deref(), page).await?;
        tx.commit().await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            SubscriptionView,
        ))
    }

    /// Invoices in the caller's scope, optionally of one tenant (resellers:
    /// their tenants' summaries).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn invoices(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        tenant_id: Option<ID>,
    ) -> Result<Connection<String, Invoice>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<InvoiceId>(first, after.as_deref())?;
        let tenant = tenant_in_scope(app, &p.scope, tenant_id.as_ref().map(|t| t.as_str())).await?;
        let tx = app.store.begin(&p.scope).await?;
        let rows = billing_rows::list_invoices(&tx, &p.scope, tenant.as_deref(), page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), Invoice))
    }

    /// Per tenant and meter in the caller's scope, for the periods starting
    /// in `month` (YYYY-MM): invoiced quantity vs committed rollups vs the
    /// raw deduplicated events; each discrepancy with its cause.
    async fn reconciliation(&self, gctx: &Context<'_>, month: String) -> Result<Reconciliation> {
        let (app, rc) = ctx(gctx);
        let report = reconcile_as(&app.billing, rc, &month).await?;
        Ok(Reconciliation::new(month, report))
    }

    async fn invoice(&self, gctx: &Context<'_>, id: ID) -> Result<Invoice> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: InvoiceId = parse_id("id", &id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = billing_rows::get_invoice(&tx, &p.scope, id.as_str()).await?;
        tx.commit().await?;
        Ok(Invoice(row))
    }
}

#[derive(Default)]
pub struct BillingMutation;

#[Object]
impl BillingMutation {
    /// Platform admins only. A plan version never changes once created: a
    /// price change is a new version.
    async fn create_plan(&self, gctx: &Context<'_>, input: CreatePlanInput) -> Result<Plan> {
        let (app, rc) = ctx(gctx);
        let plan = input.to_plan()?;
        Ok(Plan(
            plans::create_plan(&app.billing, rc, &input.name, plan).await?,
        ))
    }

    /// Platform admins only. Adds a jurisdiction's tax rate from a date on;
    /// rates are never edited (a change is a rate from a later date).
    async fn create_tax_rate(
        &self,
        gctx: &Context<'_>,
        input: CreateTaxRateInput,
    ) -> Result<TaxRate> {
        let (app, rc) = ctx(gctx);
        let input = input.to_new()?;
        Ok(TaxRate(
            taxes::create_tax_rate(&app.billing, rc, input).await?,
        ))
    }

    /// Platform admins only. Closes every subscription's period that starts
    /// in `month` (YYYY-MM): drafts during the 3-day grace after the period,
    /// finalized after it. Safe to repeat (`dotmac bill close` is the CLI).
    async fn close_billing_period(&self, gctx: &Context<'_>, month: String) -> Result<CloseReport> {
        let (app, rc) = ctx(gctx);
        Ok(close_as(&app.billing, rc, &month).await?.into())
    }

    /// Platform admins only. Credits a finalized invoice in full, or the
    /// given lines; beyond what it still asks (it was paid), the tenant's
    /// credit.
    async fn create_credit_note(
        &self,
        gctx: &Context<'_>,
        input: CreateCreditNoteInput,
    ) -> Result<CreditNote> {
        let (app, rc) = ctx(gctx);
        let lines = input
            .lines
            .map(|ls| {
                ls.into_iter()
                    .enumerate()
                    .map(|(k, l)| {
                        usize::try_from(l.line).map(|i| (i, l.amount)).map_err(|_| {
                            ApiError::validation(
                                format!("input.lines[{k}].line"),
                                "must not be negative",
                            )
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(CreditNote(
            settlement::create_credit_note(
                &app.billing,
                rc,
                &input.invoice_id,
                &input.reason,
                lines,
            )
            .await?,
        ))
    }

    /// Platform admins only. A payment received outside the webhook; an
    /// overpayment becomes the tenant's credit. Recording the same
    /// reference again returns the first payment.
    async fn record_payment(
        &self,
        gctx: &Context<'_>,
        input: RecordPaymentInput,
    ) -> Result<Payment> {
        let (app, rc) = ctx(gctx);
        let payment = settlement::record_manual_payment(
            &app.billing,
            rc,
            settlement::NewPayment {
                invoice_id: &input.invoice_id,
                amount: &input.amount,
                currency: None,
                reference: &input.reference,
                method: PaymentMethod::Manual,
                received_at: app.clock.now(),
            },
        )
        .await?;
        Ok(Payment(payment))
    }

    /// Platform admins only. Voids a finalized invoice with no payment or
    /// credit note yet.
    async fn void_invoice(&self, gctx: &Context<'_>, id: ID, reason: String) -> Result<Invoice> {
        let (app, rc) = ctx(gctx);
        Ok(Invoice(
            settlement::set_status(&app.billing, rc, &id, InvoiceStatus::Void, &reason).await?,
        ))
    }

    /// Platform admins only. Writes a finalized invoice off; a later
    /// payment still settles it.
    async fn mark_invoice_uncollectible(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<Invoice> {
        let (app, rc) = ctx(gctx);
        Ok(Invoice(
            settlement::set_status(&app.billing, rc, &id, InvoiceStatus::Uncollectible, &reason)
                .await?,
        ))
    }

    /// Platform admins only. Moves a subscription to another version or
    /// plan now; the period's recurring fees are prorated by time in force.
    async fn change_plan(
        &self,
        gctx: &Context<'_>,
        subscription_id: ID,
        plan_id: ID,
    ) -> Result<SubscriptionView> {
        let (app, rc) = ctx(gctx);
        Ok(SubscriptionView(
            subscriptions::change_plan(&app.billing, rc, &subscription_id, &plan_id).await?,
        ))
    }

    /// Platform admins only. No recurring fees accrue while paused (usage
    /// is billed as measured).
    async fn pause_subscription(&self, gctx: &Context<'_>, id: ID) -> Result<SubscriptionView> {
        let (app, rc) = ctx(gctx);
        Ok(SubscriptionView(
            subscriptions::set_paused(&app.billing, rc, &id, true).await?,
        ))
    }

    /// Platform admins only.
    async fn resume_subscription(&self, gctx: &Context<'_>, id: ID) -> Result<SubscriptionView> {
        let (app, rc) = ctx(gctx);
        Ok(SubscriptionView(
            subscriptions::set_paused(&app.billing, rc, &id, false).await?,
        ))
    }

    /// Platform admins only. Now (billed up to now) or at the period's end.
    async fn cancel_subscription(
        &self,
        gctx: &Context<'_>,
        id: ID,
        at_period_end: bool,
    ) -> Result<SubscriptionView> {
        let (app, rc) = ctx(gctx);
        Ok(SubscriptionView(
            subscriptions::cancel_subscription(&app.billing, rc, &id, at_period_end).await?,
        ))
    }

    /// Platform admins only. One live subscription per tenant.
    async fn subscribe(
        &self,
        gctx: &Context<'_>,
        input: SubscribeInput,
    ) -> Result<SubscriptionView> {
        let (app, rc) = ctx(gctx);
        let anchor = input
            .anchor_date
            .as_deref()
            .map(|d| {
                dotmac_schema::dates::parse_date(d)
                    .map_err(|e| ApiError::validation("input.anchorDate", e.to_string()))
            })
            .transpose()?;
        Ok(SubscriptionView(
            subscriptions::subscribe(
                &app.billing,
                rc,
                &input.tenant_id,
                &input.plan_id,
                anchor,
                input.terms()?,
            )
            .await?,
        ))
    }
}

#[derive(Default)]
pub struct BillingSubscription;

#[Subscription]
impl BillingSubscription {
    /// Invoices finalized in the caller's scope.
    async fn invoice_finalized(
        &self,
        gctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = InvoiceFinalized>> {
        let (app, rc) = ctx(gctx);
        let scope = rc.principal()?.scope.clone();
        let events = BroadcastStream::new(app.bus.subscribe()).take_until(token_expiry(app, rc));
        Ok(events.filter_map(move |e| {
            let visible = match e {
                Ok(BusEvent::Invoice(i))
                    if covers(&scope, &i.tenant_id, i.reseller_id.as_deref()) =>
                {
                    Some(InvoiceFinalized {
                        invoice_id: async_graphql::ID(i.invoice_id),
                        tenant_id: async_graphql::ID(i.tenant_id),
                        number: i.number,
                        total: i.total,
                        currency: i.currency,
                        finalized_at: i.finalized_at,
                    })
                }
                _ => None,
            };
            async move { visible }
        }))
    }
}

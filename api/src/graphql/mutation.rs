//! Mutations. Create/update take an `input` object; lifecycle mutations take
//! `id` and `reason`; each is one transaction with its audit record.

use async_graphql::{Context, Object, ID};
use dotmac_schema::{ApiKeyScope, TenantAction};

use super::billing_types::{
    CloseReport, CreateCreditNoteInput, CreatePlanInput, CreditNote, Invoice, Payment, Plan,
    RecordPaymentInput, SubscribeInput, Subscription as BillingSubscription,
};
use super::ctx;
use super::types::{
    ApiKey, AuthPayload, CreateMeterInput, CreateResellerInput, CreateTenantInput, CreatedApiKey,
    Invitation, InvitationPayload, InviteUserInput, Meter, Reseller, Tenant, UpdateMeterInput,
    UpdateTenantInput,
};
use crate::domain::api_keys;
use crate::domain::billing;
use crate::domain::identity::{self, NewInvitation, Session};
use crate::domain::meters::{self, NewMeter};
use crate::domain::resellers::{self, NewReseller};
use crate::domain::settlement;
use crate::domain::tenants::{self, NewTenant, TenantPatch};

pub struct MutationRoot;

type Result<T> = async_graphql::Result<T>;

fn payload(s: Session) -> AuthPayload {
    AuthPayload {
        access_token: s.access_token,
        refresh_token: s.refresh_token,
        expires_in: s.expires_in,
        user: s.user,
    }
}

async fn lifecycle(
    gctx: &Context<'_>,
    id: &ID,
    action: TenantAction,
    reason: Option<String>,
) -> Result<Tenant> {
    let (app, rc) = ctx(gctx);
    Ok(Tenant::single(
        tenants::transition(app, rc, id, action, reason.as_deref()).await?,
    ))
}

#[Object]
impl MutationRoot {
    /// Signs in; after 5 failures the account is locked for 30 minutes.
    async fn login(
        &self,
        gctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<AuthPayload> {
        let (app, rc) = ctx(gctx);
        Ok(payload(identity::login(app, rc, &email, &password).await?))
    }

    /// Exchanges a refresh token for a new pair; the old one stops working.
    async fn refresh_token(
        &self,
        gctx: &Context<'_>,
        refresh_token: String,
    ) -> Result<AuthPayload> {
        let (app, rc) = ctx(gctx);
        Ok(payload(identity::refresh(app, rc, &refresh_token).await?))
    }

    /// Revokes the session of this refresh token.
    async fn logout(&self, gctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        let (app, rc) = ctx(gctx);
        Ok(identity::logout(app, rc, &refresh_token).await?)
    }

    async fn change_password(
        &self,
        gctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> Result<bool> {
        let (app, rc) = ctx(gctx);
        Ok(identity::change_password(app, rc, &current_password, &new_password).await?)
    }

    /// Invites a user with a role in the inviter's scope; returns a one-time token.
    async fn invite_user(
        &self,
        gctx: &Context<'_>,
        input: InviteUserInput,
    ) -> Result<InvitationPayload> {
        let (app, rc) = ctx(gctx);
        let (row, token) = identity::invite(
            app,
            rc,
            NewInvitation {
                email: input.email,
                role: input.role,
                tenant_id: input.tenant_id.map(|t| t.0),
                reseller_id: input.reseller_id.map(|r| r.0),
            },
        )
        .await?;
        Ok(InvitationPayload {
            invitation: Invitation(row),
            token,
        })
    }

    /// Sets the invitee's password and signs them in.
    async fn accept_invitation(
        &self,
        gctx: &Context<'_>,
        token: String,
        password: String,
        name: Option<String>,
    ) -> Result<AuthPayload> {
        let (app, rc) = ctx(gctx);
        Ok(payload(
            identity::accept_invitation(app, rc, &token, &password, name.as_deref()).await?,
        ))
    }

    /// Onboards a tenant in state PENDING.
    async fn create_tenant(&self, gctx: &Context<'_>, input: CreateTenantInput) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        let row = tenants::create(
            app,
            rc,
            NewTenant {
                name: input.name,
                slug: input.slug,
                tier: input.tier,
                contact_name: input.contact_name,
                contact_email: input.contact_email,
                reseller_id: input.reseller_id.map(|r| r.0),
                tax_jurisdiction: input.tax_jurisdiction,
            },
        )
        .await?;
        Ok(Tenant::single(row))
    }

    async fn update_tenant(
        &self,
        gctx: &Context<'_>,
        id: ID,
        input: UpdateTenantInput,
    ) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        let row = tenants::update(
            app,
            rc,
            &id,
            TenantPatch {
                name: input.name,
                slug: input.slug,
                tier: input.tier,
                contact_name: input.contact_name,
                contact_email: input.contact_email,
                tax_jurisdiction: input.tax_jurisdiction,
            },
        )
        .await?;
        Ok(Tenant::single(row))
    }

    /// PENDING or FAILED → PROVISIONING.
    async fn provision_tenant(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::Provision, reason).await
    }

    /// PROVISIONING or MAINTENANCE → ACTIVE.
    async fn activate_tenant(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::Activate, reason).await
    }

    /// PROVISIONING → FAILED; a reason is required.
    async fn mark_tenant_failed(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::MarkFailed, Some(reason)).await
    }

    /// ACTIVE → SUSPENDED; a reason is required.
    async fn suspend_tenant(&self, gctx: &Context<'_>, id: ID, reason: String) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::Suspend, Some(reason)).await
    }

    /// SUSPENDED → ACTIVE.
    async fn reactivate_tenant(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::Reactivate, reason).await
    }

    /// ACTIVE → MAINTENANCE.
    async fn start_tenant_maintenance(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::StartMaintenance, reason).await
    }

    /// PENDING, ACTIVE or SUSPENDED → CANCELLED; a reason is required.
    async fn cancel_tenant(&self, gctx: &Context<'_>, id: ID, reason: String) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::Cancel, Some(reason)).await
    }

    /// CANCELLED → DEPROVISIONED.
    async fn deprovision_tenant(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: Option<String>,
    ) -> Result<Tenant> {
        lifecycle(gctx, &id, TenantAction::Deprovision, reason).await
    }

    /// Platform admins only.
    async fn create_reseller(
        &self,
        gctx: &Context<'_>,
        input: CreateResellerInput,
    ) -> Result<Reseller> {
        let (app, rc) = ctx(gctx);
        let row = resellers::create(
            app,
            rc,
            NewReseller {
                name: input.name,
                tier: input.tier.map(|t| t.as_str().to_owned()),
                contact_email: input.contact_email,
            },
        )
        .await?;
        Ok(Reseller(row))
    }

    /// A new API key for a tenant; the secret is in the answer and nowhere else.
    async fn create_api_key(
        &self,
        gctx: &Context<'_>,
        tenant_id: ID,
        scopes: Vec<ApiKeyScope>,
        name: Option<String>,
    ) -> Result<CreatedApiKey> {
        let (app, rc) = ctx(gctx);
        let (row, secret) = api_keys::create(app, rc, &tenant_id, name.as_deref(), &scopes).await?;
        Ok(CreatedApiKey {
            api_key: ApiKey(row),
            secret,
        })
    }

    /// Platform admins only. A plan version never changes once created: a
    /// price change is a new version.
    async fn create_plan(&self, gctx: &Context<'_>, input: CreatePlanInput) -> Result<Plan> {
        let (app, rc) = ctx(gctx);
        let plan = input.to_plan()?;
        Ok(Plan(
            billing::create_plan(app, rc, &input.name, plan).await?,
        ))
    }

    /// Platform admins only. Adds a jurisdiction's tax rate from a date on;
    /// rates are never edited (a change is a rate from a later date).
    async fn create_tax_rate(
        &self,
        gctx: &Context<'_>,
        input: super::tax_types::CreateTaxRateInput,
    ) -> Result<super::tax_types::TaxRate> {
        let (app, rc) = ctx(gctx);
        let input = input.to_new()?;
        Ok(super::tax_types::TaxRate(
            crate::domain::tax::create_tax_rate(app, rc, input).await?,
        ))
    }

    /// Platform admins only. Closes every subscription's period that starts
    /// in `month` (YYYY-MM): drafts during the 3-day grace after the period,
    /// finalized after it. Safe to repeat (`dotmac bill close` is the CLI).
    async fn close_billing_period(&self, gctx: &Context<'_>, month: String) -> Result<CloseReport> {
        let (app, rc) = ctx(gctx);
        Ok(billing::close_as(app, rc, &month).await?.into())
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
                            crate::error::ApiError::validation(
                                format!("input.lines[{k}].line"),
                                "must not be negative",
                            )
                        })
                    })
                    .collect::<std::result::Result<Vec<_>, _>>()
            })
            .transpose()?;
        Ok(CreditNote(
            settlement::create_credit_note(app, rc, &input.invoice_id, &input.reason, lines)
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
            app,
            rc,
            settlement::NewPayment {
                invoice_id: &input.invoice_id,
                amount: &input.amount,
                reference: &input.reference,
                method: settlement::PaymentMethod::Manual,
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
            settlement::set_status(app, rc, &id, "void", &reason).await?,
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
            settlement::set_status(app, rc, &id, "uncollectible", &reason).await?,
        ))
    }

    /// Platform admins only. Moves a subscription to another version or
    /// plan now; the period's recurring fees are prorated by time in force.
    async fn change_plan(
        &self,
        gctx: &Context<'_>,
        subscription_id: ID,
        plan_id: ID,
    ) -> Result<BillingSubscription> {
        let (app, rc) = ctx(gctx);
        Ok(BillingSubscription(
            billing::change_plan(app, rc, &subscription_id, &plan_id).await?,
        ))
    }

    /// Platform admins only. No recurring fees accrue while paused (usage
    /// is billed as measured).
    async fn pause_subscription(&self, gctx: &Context<'_>, id: ID) -> Result<BillingSubscription> {
        let (app, rc) = ctx(gctx);
        Ok(BillingSubscription(
            billing::set_paused(app, rc, &id, true).await?,
        ))
    }

    /// Platform admins only.
    async fn resume_subscription(&self, gctx: &Context<'_>, id: ID) -> Result<BillingSubscription> {
        let (app, rc) = ctx(gctx);
        Ok(BillingSubscription(
            billing::set_paused(app, rc, &id, false).await?,
        ))
    }

    /// Platform admins only. Now (billed up to now) or at the period's end.
    async fn cancel_subscription(
        &self,
        gctx: &Context<'_>,
        id: ID,
        at_period_end: bool,
    ) -> Result<BillingSubscription> {
        let (app, rc) = ctx(gctx);
        Ok(BillingSubscription(
            billing::cancel_subscription(app, rc, &id, at_period_end).await?,
        ))
    }

    /// Platform admins only. One live subscription per tenant.
    async fn subscribe(
        &self,
        gctx: &Context<'_>,
        input: SubscribeInput,
    ) -> Result<BillingSubscription> {
        let (app, rc) = ctx(gctx);
        let anchor = input
            .anchor_date
            .as_deref()
            .map(|d| {
                d.parse::<chrono::NaiveDate>().map_err(|_| {
                    crate::error::ApiError::validation(
                        "input.anchorDate",
                        "must be a date such as 2026-11-01",
                    )
                })
            })
            .transpose()?;
        Ok(BillingSubscription(
            billing::subscribe(
                app,
                rc,
                &input.tenant_id,
                &input.plan_id,
                anchor,
                input.terms()?,
            )
            .await?,
        ))
    }

    /// Platform admins only. What a meter measures cannot change afterwards.
    async fn create_meter(&self, gctx: &Context<'_>, input: CreateMeterInput) -> Result<Meter> {
        let (app, rc) = ctx(gctx);
        let row = meters::create(
            app,
            rc,
            NewMeter {
                slug: input.slug,
                name: input.name,
                event_type: input.event_type,
                aggregation: input.aggregation,
                value_path: input.value_path,
                group_by: input.group_by,
                window: input.window,
            },
        )
        .await?;
        Ok(Meter(row))
    }

    /// Renames a meter (its definition is fixed).
    async fn update_meter(
        &self,
        gctx: &Context<'_>,
        id: ID,
        input: UpdateMeterInput,
    ) -> Result<Meter> {
        let (app, rc) = ctx(gctx);
        Ok(Meter(meters::rename(app, rc, &id, &input.name).await?))
    }

    /// Stops a meter counting new events; a reason is required.
    async fn archive_meter(&self, gctx: &Context<'_>, id: ID, reason: String) -> Result<Meter> {
        let (app, rc) = ctx(gctx);
        Ok(Meter(meters::archive(app, rc, &id, &reason).await?))
    }

    async fn revoke_api_key(&self, gctx: &Context<'_>, id: ID) -> Result<ApiKey> {
        let (app, rc) = ctx(gctx);
        Ok(ApiKey(api_keys::revoke(app, rc, &id).await?))
    }
}

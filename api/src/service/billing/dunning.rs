//! Dunning: subscriptions with an invoice unpaid past its due date turn
//! past_due; `billing.suspend_after_days` later their tenant is suspended;
//! once nothing is overdue they are active again and a tenant dunning
//! suspended is reactivated.

use chrono::{DateTime, Utc};
use dotmac_schema::{Scope, SubscriptionState, TenantAction, TenantId, TenantState};
use rust_decimal::Decimal;

use super::Billing;
use crate::caller::RequestCtx;
use crate::error::ApiResult;
use crate::service::directory::tenants;
use crate::service::parse_id;
use crate::store::billing_rows::{self as rows, dec};

/// What one dunning run changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DunningReport {
    pub past_due: usize,
    pub suspended: usize,
    pub reactivated: usize,
}

/// The reason dunning writes on a tenant it suspends (and looks for
/// before reactivating one); resellers may not lift it.
pub use crate::service::directory::tenants::NON_PAYMENT as DUNNING_REASON;

/// Applies dunning at `now`: subscriptions with an invoice past its due
/// date turn past_due; `suspend_after_days` later the tenant is suspended;
/// once nothing is overdue the subscription is active again and a tenant
/// that dunning suspended is reactivated.
pub async fn run_dunning(
    billing: &Billing,
    now: DateTime<Utc>,
    suspend_after_days: i64,
) -> ApiResult<DunningReport> {
    use dotmac_billing::dunning::{standing, OpenInvoice, Standing};
    use std::collections::BTreeMap;
    super::subscriptions::activate_ended_trials(billing, now).await?;
    let tx = billing.store.begin_system().await?;
    let open = rows::open_invoices(&tx).await?;
    let subs = rows::live_subscriptions(&tx).await?;
    tx.commit().await?;
    let mut by_tenant: BTreeMap<String, Vec<OpenInvoice>> = BTreeMap::new();
    for inv in &open {
        let owing = dec(&inv.amount_due)? > Decimal::ZERO;
        if let Some(at) = inv.finalized_at {
            by_tenant
                .entry(inv.tenant_id.clone())
                .or_default()
                .push(OpenInvoice {
                    finalized_at: at,
                    paid: !owing,
                });
        }
    }
    let ctx = system_ctx();
    let mut report = DunningReport::default();
    for sub in subs {
        let invoices = by_tenant
            .get(&sub.tenant_id)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        let standing = standing(invoices, now, suspend_after_days);
        let tenant: TenantId = parse_id("tenantId", &sub.tenant_id)?;
        let tx = billing.store.begin_system().await?;
        let t = crate::store::tenant_rows::get(&tx, &Scope::All, &tenant).await?;
        tx.commit().await?;
        match standing {
            Standing::InGoodStanding => {
                if sub.state == SubscriptionState::PastDue {
                    let (from, to) = (SubscriptionState::PastDue, SubscriptionState::Active);
                    set_subscription_state(billing, &sub.id, from, to).await?;
                }
                if t.state == TenantState::Suspended
                    && t.state_reason.as_deref() == Some(DUNNING_REASON)
                {
                    tenants::transition(
                        &billing.directory,
                        &ctx,
                        &sub.tenant_id,
                        TenantAction::Reactivate,
                        None,
                    )
                    .await?;
                    report.reactivated += 1;
                }
            }
            Standing::PastDue { .. } | Standing::Suspend => {
                if sub.state == SubscriptionState::Active {
                    let (from, to) = (SubscriptionState::Active, SubscriptionState::PastDue);
                    set_subscription_state(billing, &sub.id, from, to).await?;
                    report.past_due += 1;
                }
                if standing == Standing::Suspend && t.state == TenantState::Active {
                    tenants::transition(
                        &billing.directory,
                        &ctx,
                        &sub.tenant_id,
                        TenantAction::Suspend,
                        Some(DUNNING_REASON),
                    )
                    .await?;
                    report.suspended += 1;
                }
            }
        }
    }
    Ok(report)
}

async fn set_subscription_state(
    billing: &Billing,
    id: &str,
    from: SubscriptionState,
    to: SubscriptionState,
) -> ApiResult<()> {
    let tx = billing.store.begin_system().await?;
    rows::move_subscription_state(&tx, id, from, to, billing.clock.now()).await?;
    tx.commit().await?;
    Ok(())
}

/// The principal dunning acts as: a platform admin no one signs in as; its
/// audit records carry the request id `dunning`.
fn system_ctx() -> RequestCtx {
    RequestCtx::system("dunning")
}

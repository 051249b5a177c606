//! Subscriptions over `graphql-transport-ws`: events are filtered by the
//! subscriber's scope before they leave the server.

use async_graphql::{Context, Subscription};
use dotmac_schema::{ResellerId, TenantId};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::billing_types::InvoiceFinalized;
use super::ctx;
use super::types::{TenantEvent, UsageUpdated};
use crate::app::RequestCtx;
use crate::events::BusEvent;

pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// State changes (and creations) of tenants in the caller's scope.
    async fn tenant_events(
        &self,
        gctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = TenantEvent>> {
        let (app, rc) = ctx(gctx);
        let scope = rc.principal()?.scope.clone();
        let events = BroadcastStream::new(app.bus.subscribe()).take_until(token_expiry(app, rc));
        Ok(events.filter_map(move |e| {
            let visible = match e {
                Ok(BusEvent::Tenant(e))
                    if covers(&scope, &e.tenant_id, e.reseller_id.as_deref()) =>
                {
                    Some(e.into())
                }
                _ => None,
            };
            async move { visible }
        }))
    }

    /// Committed usage of `meter` (a slug) for tenants in the caller's
    /// scope, for live dashboards: each event says which tenant's usage
    /// changed; read the numbers with the `usage` query.
    async fn usage_updated(
        &self,
        gctx: &Context<'_>,
        meter: String,
    ) -> async_graphql::Result<impl Stream<Item = UsageUpdated>> {
        let (app, rc) = ctx(gctx);
        let scope = rc.principal()?.scope.clone();
        let events = BroadcastStream::new(app.bus.subscribe()).take_until(token_expiry(app, rc));
        Ok(events.filter_map(move |e| {
            let visible = match e {
                Ok(BusEvent::Usage(u))
                    if u.meter == meter
                        && covers(&scope, &u.tenant_id, u.reseller_id.as_deref()) =>
                {
                    Some(UsageUpdated {
                        tenant_id: async_graphql::ID(u.tenant_id),
                        meter: u.meter,
                        committed_at: u.committed_at,
                    })
                }
                _ => None,
            };
            async move { visible }
        }))
    }

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

/// A subscription lives no longer than the token that opened it.
fn token_expiry(app: &crate::app::App, rc: &RequestCtx) -> tokio::time::Sleep {
    let remaining = rc
        .expires_at
        .map(|exp| (exp - app.clock.now()).to_std().unwrap_or_default())
        .unwrap_or(std::time::Duration::MAX);
    tokio::time::sleep(remaining.min(std::time::Duration::from_secs(86_400 * 365)))
}

/// Whether `scope` may see an event of this tenant.
fn covers(scope: &dotmac_schema::Scope, tenant_id: &str, reseller_id: Option<&str>) -> bool {
    let Ok(tenant) = tenant_id.parse::<TenantId>() else {
        return false;
    };
    let reseller = reseller_id.and_then(|r| r.parse::<ResellerId>().ok());
    scope.covers_tenant(&tenant, reseller.as_ref())
}

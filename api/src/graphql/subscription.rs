//! Subscriptions over `graphql-transport-ws`: events are filtered by the
//! subscriber's scope before they leave the server.

use async_graphql::{Context, Subscription};
use dotmac_schema::{ResellerId, TenantId};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::ctx;
use super::types::TenantEvent;

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
        // A subscription lives no longer than the token that opened it.
        let remaining = rc
            .expires_at
            .map(|exp| (exp - chrono::Utc::now()).to_std().unwrap_or_default())
            .unwrap_or(std::time::Duration::MAX);
        let expired =
            tokio::time::sleep(remaining.min(std::time::Duration::from_secs(86_400 * 365)));
        let events = BroadcastStream::new(app.bus.subscribe()).take_until(expired);
        Ok(events.filter_map(move |e| {
            let visible = e.ok().filter(|e| {
                let Ok(tenant) = e.tenant_id.parse::<TenantId>() else {
                    return false;
                };
                let reseller = e
                    .reseller_id
                    .as_deref()
                    .and_then(|r| r.parse::<ResellerId>().ok());
                scope.covers_tenant(&tenant, reseller.as_ref())
            });
            async move { visible.map(|e| -> TenantEvent { e.into() }) }
        }))
    }
}

//! Operators' changes of tenants' instances (upgrade, secret rotation,
//! abandoning a stuck cleanup) and the stream of instance changes; the
//! instance itself is read as `Tenant.instance` (see `instance_views`).

use async_graphql::{Context, Object, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::directory::Tenant;
use super::{covers, ctx, token_expiry, Result};
use crate::bus::{BusEvent, InstanceChanged};
use crate::service::directory::instances;

#[derive(Default)]
pub struct InstanceMutation;

#[Object]
impl InstanceMutation {
    /// Moves a tenant's instance to a framework version (platform admins);
    /// a version that misses its progress deadline is rolled back.
    async fn upgrade_tenant_instance(
        &self,
        gctx: &Context<'_>,
        id: ID,
        version: String,
    ) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        Ok(Tenant::single(
            instances::upgrade(&app.directory, rc, &id, &version).await?,
        ))
    }

    /// New secrets for the tenant's instance (platform admins, and the
    /// tenant's own admins); the previous version stays readable until the
    /// instance has moved to the new one.
    async fn rotate_tenant_secrets(&self, gctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        Ok(Tenant::single(
            instances::rotate_secrets(&app.directory, rc, &id).await?,
        ))
    }

    /// Gives up a cleanup that cannot finish (platform admins, with a
    /// reason): the instance is released, what is left stays.
    async fn abandon_instance_cleanup(
        &self,
        gctx: &Context<'_>,
        id: ID,
        reason: String,
    ) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        Ok(Tenant::single(
            instances::abandon_cleanup(&app.directory, rc, &id, &reason).await?,
        ))
    }
}

/// An instance reported a new status.
#[derive(SimpleObject)]
pub struct InstanceEvent {
    pub tenant_id: ID,
    pub phase: String,
    pub ready: bool,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

impl From<InstanceChanged> for InstanceEvent {
    fn from(e: InstanceChanged) -> Self {
        InstanceEvent {
            tenant_id: ID(e.tenant_id),
            phase: e.phase,
            ready: e.ready,
            reason: e.reason,
            message: e.message,
            at: e.at,
        }
    }
}

#[derive(Default)]
pub struct InstanceSubscription;

#[Subscription]
impl InstanceSubscription {
    /// Status changes of the instances of tenants in the caller's scope.
    async fn instance_events(
        &self,
        gctx: &Context<'_>,
    ) -> async_graphql::Result<impl Stream<Item = InstanceEvent>> {
        let (app, rc) = ctx(gctx);
        let scope = rc.principal()?.scope.clone();
        let events = BroadcastStream::new(app.bus.subscribe()).take_until(token_expiry(app, rc));
        Ok(events.filter_map(move |e| {
            let visible = match e {
                Ok(BusEvent::Instance(e))
                    if covers(&scope, &e.tenant_id, e.reseller_id.as_deref()) =>
                {
                    Some(e.into())
                }
                _ => None,
            };
            async move { visible }
        }))
    }
}

//! Metering's GraphQL: meter definitions, committed usage per tenant,
//! window and group, and live usage updates, with their views and inputs.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use dotmac_schema::MeterId;
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::{connection, covers, ctx, page_request, token_expiry, Result};
use crate::bus::BusEvent;
use crate::service::metering::meters::{self, NewMeter};
use crate::service::metering::usage;
use crate::service::parse_id;
use crate::store::meter_rows;

#[derive(Default)]
pub struct MeteringQuery;

#[Object]
impl MeteringQuery {
    /// The meters that apply to the caller's tenants (today: every platform meter).
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn meters(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(default)] include_archived: bool,
    ) -> Result<Connection<String, Meter>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<MeterId>(first, after.as_deref())?;
        let tx = app.store.begin(&p.scope).await?;
        let rows = meter_rows::list(&tx, &p.scope, include_archived, page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), Meter))
    }

    async fn meter(&self, gctx: &Context<'_>, id: ID) -> Result<Meter> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: MeterId = parse_id("id", &id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = meter_rows::get(&tx, &p.scope, &id).await?;
        tx.commit().await?;
        Ok(Meter(row))
    }

    /// Committed usage of one meter (by slug) in `[from, to)`, per tenant in
    /// the caller's scope, window and group. `granularity` (default: the
    /// meter's window) may be coarser than the meter's window; `groupBy`
    /// (default: all of the meter's properties) may drop properties. At most
    /// 10,000 points.
    #[allow(clippy::too_many_arguments)]
    async fn usage(
        &self,
        gctx: &Context<'_>,
        meter: String,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
        tenant_id: Option<ID>,
        granularity: Option<dotmac_schema::usage::Window>,
        group_by: Option<Vec<String>>,
    ) -> Result<Vec<UsagePoint>> {
        let (app, rc) = ctx(gctx);
        let points = usage::query(
            &app.metering,
            rc,
            usage::UsageQuery {
                meter,
                from,
                to,
                tenant_id: tenant_id.map(|t| t.0),
                granularity,
                group_by,
            },
        )
        .await?;
        Ok(points.into_iter().map(UsagePoint).collect())
    }
}

#[derive(Default)]
pub struct MeteringMutation;

#[Object]
impl MeteringMutation {
    /// Platform admins only. What a meter measures cannot change afterwards.
    async fn create_meter(&self, gctx: &Context<'_>, input: CreateMeterInput) -> Result<Meter> {
        let (app, rc) = ctx(gctx);
        let row = meters::create(
            &app.metering,
            rc,
            NewMeter {
                slug: input.slug,
                name: input.name,
                event_type: input.event_type,
                aggregation: input.aggregation,
                value_path: input.value_path,
                group_by: input.group_by,
                window: input.window,
                allow_negative: input.allow_negative,
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
        Ok(Meter(
            meters::rename(&app.metering, rc, &id, &input.name).await?,
        ))
    }

    /// Stops a meter counting new events; a reason is required.
    async fn archive_meter(&self, gctx: &Context<'_>, id: ID, reason: String) -> Result<Meter> {
        let (app, rc) = ctx(gctx);
        Ok(Meter(
            meters::archive(&app.metering, rc, &id, &reason).await?,
        ))
    }
}

#[derive(Default)]
pub struct MeteringSubscription;

#[Subscription]
impl MeteringSubscription {
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
}

/// What the platform meters: events of one type, aggregated per window.
pub struct Meter(pub crate::store::meter_rows::MeterRow);

#[Object]
impl Meter {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The CloudEvents `type` counted.
    async fn event_type(&self) -> &str {
        &self.0.event_type
    }
    async fn aggregation(&self) -> async_graphql::Result<dotmac_schema::usage::Aggregation> {
        Ok(crate::store::meter_rows::definition(&self.0)?.aggregation)
    }
    /// Dot-separated path into the event's `data` (null for COUNT).
    async fn value_path(&self) -> Option<&str> {
        self.0.value_path.as_deref()
    }
    async fn group_by(&self) -> async_graphql::Result<Vec<String>> {
        Ok(crate::store::meter_rows::definition(&self.0)?.group_by)
    }
    async fn window(&self) -> async_graphql::Result<dotmac_schema::usage::Window> {
        Ok(crate::store::meter_rows::definition(&self.0)?.window)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Set once the meter stops counting new events.
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }
    /// Whether events may carry negative values.
    async fn allow_negative(&self) -> bool {
        self.0.allow_negative
    }
}

#[derive(InputObject)]
pub struct CreateMeterInput {
    /// Stable name, `[a-z0-9-]`, 3–63 characters.
    pub slug: String,
    pub name: String,
    pub event_type: String,
    pub aggregation: dotmac_schema::usage::Aggregation,
    /// Required unless the aggregation is COUNT.
    pub value_path: Option<String>,
    #[graphql(default)]
    pub group_by: Vec<String>,
    pub window: dotmac_schema::usage::Window,
    /// Whether events may carry negative values. Off by default: a negative
    /// value lowers a bill.
    #[graphql(default)]
    pub allow_negative: bool,
}

#[derive(InputObject)]
pub struct UpdateMeterInput {
    pub name: String,
}

/// One property value of a usage group.
#[derive(async_graphql::SimpleObject)]
pub struct UsageGroupValue {
    pub property: String,
    pub value: String,
}

/// One window of one tenant's usage of a meter.
pub struct UsagePoint(pub usage::UsagePoint);

#[Object]
impl UsagePoint {
    async fn tenant_id(&self) -> ID {
        ID(self.0.tenant_id.clone())
    }
    async fn window_start(&self) -> chrono::DateTime<chrono::Utc> {
        self.0.window_start
    }
    /// The group-by properties and their values (empty when ungrouped).
    async fn group(&self) -> Vec<UsageGroupValue> {
        self.0
            .group
            .iter()
            .map(|(property, value)| UsageGroupValue {
                property: property.clone(),
                value: value.clone(),
            })
            .collect()
    }
    /// The exact value as a decimal string (never a float).
    async fn value(&self) -> String {
        self.0.value.to_string()
    }
}

/// New usage of a meter was committed for a tenant: read it with `usage`.
#[derive(SimpleObject)]
pub struct UsageUpdated {
    pub tenant_id: ID,
    pub meter: String,
    pub committed_at: DateTime<Utc>,
}

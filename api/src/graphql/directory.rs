//! The directory's GraphQL: tenants (onboarding, their lifecycle, their
//! state changes as a subscription) and resellers, with their views and
//! inputs. Nested fields of tenants (reseller, counts) are prefetched in
//! batches by the list resolver.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use dotmac_schema::{ResellerId, ResellerTier, ResourceTier, TenantAction, TenantId, TenantState};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use super::instance_views::TenantInstanceView;
use super::{connection, covers, ctx, page_request, token_expiry, Result};
use crate::bus::{BusEvent, TenantEvent as BusTenantEvent};
use crate::error::ApiResult;
use crate::service::directory::resellers::{self, NewReseller};
use crate::service::directory::tenants::{self, NewTenant, TenantPatch};
use crate::service::parse_id;
use crate::store::instance_rows::{self, InstanceRow};
use crate::store::reseller_rows::{self as reseller_rows, ResellerRow};
use crate::store::tenant_rows::{self as tenant_rows, TenantRow};

#[derive(Default)]
pub struct DirectoryQuery;

#[Object]
impl DirectoryQuery {
    /// One tenant in the caller's scope; NOT_FOUND otherwise.
    async fn tenant(&self, gctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: TenantId = parse_id("id", &id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = tenant_rows::get(&tx, &p.scope, &id).await?;
        tx.commit().await?;
        Ok(Tenant::single(row))
    }

    /// Tenants in the caller's scope, oldest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn tenants(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<TenantFilter>,
    ) -> Result<Connection<String, Tenant>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<TenantId>(first, after.as_deref())?;
        let filter = filter.unwrap_or_default();
        let filter = tenant_rows::TenantFilter {
            state: filter.state,
            reseller_id: filter.reseller_id.map(|r| r.0),
            search: filter.search,
        };
        let node = gctx.look_ahead().field("edges").field("node");
        let with_counts = node.field("userCount").exists() || node.field("apiKeyCount").exists();
        let tx = app.store.begin(&p.scope).await?;
        let mut batch = TenantBatch::default();
        let rows = if with_counts {
            let page = tenant_rows::list_with_counts(&tx, &p.scope, &filter, page).await?;
            let mut rows = Vec::with_capacity(page.items.len());
            for t in page.items {
                batch.user_counts.insert(t.row.id.clone(), t.user_count);
                batch
                    .api_key_counts
                    .insert(t.row.id.clone(), t.api_key_count);
                rows.push(t.row);
            }
            crate::store::Page {
                items: rows,
                has_next: page.has_next,
            }
        } else {
            tenant_rows::list(&tx, &p.scope, &filter, page).await?
        };
        // Instances of the whole page in one query, not one per tenant.
        if node.field("instance").exists() {
            let ids: Vec<String> = rows.items.iter().map(|t| t.id.clone()).collect();
            batch.instances = instance_rows::get_many(&tx, &p.scope, &ids)
                .await?
                .into_iter()
                .map(|r| (r.tenant_id.clone(), r))
                .collect();
            batch.instances_loaded = true;
        }
        // Resellers of the whole page in one query, not one per tenant.
        if node.field("reseller").exists() {
            let mut ids: Vec<String> = rows
                .items
                .iter()
                .filter_map(|t| t.reseller_id.clone())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            batch.resellers = reseller_rows::get_many(&tx, &p.scope, &ids)
                .await?
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
        }
        tx.commit().await?;
        let batch = Arc::new(batch);
        Ok(connection(
            rows,
            after.is_some(),
            |t| t.id.clone(),
            |row| Tenant {
                row,
                batch: Some(batch.clone()),
            },
        ))
    }

    async fn reseller(&self, gctx: &Context<'_>, id: ID) -> Result<Reseller> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: ResellerId = parse_id("id", &id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = reseller_rows::get(&tx, &p.scope, &id).await?;
        tx.commit().await?;
        Ok(Reseller(row))
    }

    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn resellers(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, Reseller>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<ResellerId>(first, after.as_deref())?;
        let tx = app.store.begin(&p.scope).await?;
        let rows = reseller_rows::list(&tx, &p.scope, page).await?;
        tx.commit().await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            Reseller,
        ))
    }
}

#[derive(Default)]
pub struct DirectoryMutation;

#[Object]
impl DirectoryMutation {
    /// Onboards a tenant in state PENDING.
    async fn create_tenant(&self, gctx: &Context<'_>, input: CreateTenantInput) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        let row = tenants::create(
            &app.directory,
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
            &app.directory,
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
            &app.directory,
            rc,
            NewReseller {
                name: input.name,
                tier: input.tier,
                contact_email: input.contact_email,
            },
        )
        .await?;
        Ok(Reseller(row))
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
        tenants::transition(&app.directory, rc, id, action, reason.as_deref()).await?,
    ))
}

#[derive(Default)]
pub struct DirectorySubscription;

#[Subscription]
impl DirectorySubscription {
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
}

/// Data looked up once for a whole page of tenants.
#[derive(Default)]
pub struct TenantBatch {
    pub resellers: HashMap<String, ResellerRow>,
    pub user_counts: HashMap<String, i64>,
    pub api_key_counts: HashMap<String, i64>,
    pub instances: HashMap<String, InstanceRow>,
    /// `instances` was looked up (an absent tenant then has none).
    pub instances_loaded: bool,
}

/// An ISP onboarded onto the platform.
pub struct Tenant {
    pub row: TenantRow,
    pub batch: Option<Arc<TenantBatch>>,
}

impl Tenant {
    pub fn single(row: TenantRow) -> Self {
        Tenant { row, batch: None }
    }

    /// The counts of this tenant, from the batch or from one query of its own.
    async fn counts(&self, gctx: &Context<'_>) -> ApiResult<(i64, i64)> {
        if let Some(b) = &self.batch {
            return Ok((
                b.user_counts.get(&self.row.id).copied().unwrap_or(0),
                b.api_key_counts.get(&self.row.id).copied().unwrap_or(0),
            ));
        }
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let tx = app.store.begin(&p.scope).await?;
        let (users, keys) =
            tenant_rows::counts(&tx, &p.scope, std::slice::from_ref(&self.row.id)).await?;
        tx.commit().await?;
        Ok((
            users.get(&self.row.id).copied().unwrap_or(0),
            keys.get(&self.row.id).copied().unwrap_or(0),
        ))
    }
}

#[Object]
impl Tenant {
    async fn id(&self) -> ID {
        ID(self.row.id.clone())
    }
    async fn name(&self) -> &str {
        &self.row.name
    }
    async fn slug(&self) -> &str {
        &self.row.slug
    }
    async fn state(&self) -> TenantState {
        self.row.state
    }
    /// Why the tenant is in its state (suspension or cancellation reason).
    async fn state_reason(&self) -> Option<&str> {
        self.row.state_reason.as_deref()
    }
    async fn tier(&self) -> ResourceTier {
        self.row.tier
    }
    async fn contact_name(&self) -> Option<&str> {
        self.row.contact_name.as_deref()
    }
    async fn contact_email(&self) -> Option<&str> {
        self.row.contact_email.as_deref()
    }
    async fn reseller_id(&self) -> Option<ID> {
        self.row.reseller_id.clone().map(ID)
    }
    /// ISO 3166 code (KE, US-CA) whose tax rate its invoices carry.
    async fn tax_jurisdiction(&self) -> Option<&str> {
        self.row.tax_jurisdiction.as_deref()
    }
    /// The reseller, when the caller may see it (tenant users may not).
    async fn reseller(&self, gctx: &Context<'_>) -> async_graphql::Result<Option<Reseller>> {
        let Some(rid) = &self.row.reseller_id else {
            return Ok(None);
        };
        if let Some(b) = &self.batch {
            return Ok(b.resellers.get(rid).cloned().map(Reseller));
        }
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let Ok(id) = rid.parse::<ResellerId>() else {
            return Ok(None);
        };
        let tx = app.store.begin(&p.scope).await?;
        let found = reseller_rows::get(&tx, &p.scope, &id).await.ok();
        tx.commit().await?;
        Ok(found.map(Reseller))
    }
    /// Users who belong to this tenant.
    async fn user_count(&self, gctx: &Context<'_>) -> async_graphql::Result<i64> {
        Ok(self.counts(gctx).await?.0)
    }
    /// API keys of this tenant that are not revoked.
    async fn api_key_count(&self, gctx: &Context<'_>) -> async_graphql::Result<i64> {
        Ok(self.counts(gctx).await?.1)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.row.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.row.updated_at
    }
    /// Its ISP-framework instance on the cluster, once provisioning asked
    /// for one: phase, the conditions naming any failing step, versions.
    async fn instance(
        &self,
        gctx: &Context<'_>,
    ) -> async_graphql::Result<Option<TenantInstanceView>> {
        if let Some(b) = self.batch.as_ref().filter(|b| b.instances_loaded) {
            return Ok(b
                .instances
                .get(&self.row.id)
                .cloned()
                .map(TenantInstanceView::new));
        }
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: TenantId = parse_id("id", &self.row.id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = instance_rows::get(&tx, &p.scope, &id).await?;
        tx.commit().await?;
        Ok(row.map(TenantInstanceView::new))
    }
}

/// A partner that brings tenants and earns commission on them.
#[derive(Clone)]
pub struct Reseller(pub ResellerRow);

#[Object]
impl Reseller {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn tier(&self) -> ResellerTier {
        self.0.tier
    }
    async fn contact_email(&self) -> Option<&str> {
        self.0.contact_email.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A tenant changed state; `from` is null when it was just created.
#[derive(SimpleObject)]
pub struct TenantEvent {
    pub tenant_id: ID,
    pub from: Option<TenantState>,
    pub to: TenantState,
    pub action: Option<TenantAction>,
    pub reason: Option<String>,
    pub actor: String,
    pub at: DateTime<Utc>,
}

impl From<BusTenantEvent> for TenantEvent {
    fn from(e: BusTenantEvent) -> Self {
        TenantEvent {
            tenant_id: ID(e.tenant_id),
            from: e.from,
            to: e.to,
            action: e.action,
            reason: e.reason,
            actor: e.actor,
            at: e.at,
        }
    }
}

#[derive(InputObject, Default)]
pub struct TenantFilter {
    pub state: Option<TenantState>,
    pub reseller_id: Option<ID>,
    /// Matches name or slug, case-insensitively.
    pub search: Option<String>,
}

#[derive(InputObject)]
pub struct CreateTenantInput {
    pub name: String,
    /// Derived from the name when absent.
    pub slug: Option<String>,
    /// Defaults to MICRO.
    pub tier: Option<ResourceTier>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    pub reseller_id: Option<ID>,
    /// ISO 3166 code (KE, US-CA) whose tax rate applies; platform admins only.
    pub tax_jurisdiction: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateTenantInput {
    pub name: Option<String>,
    pub slug: Option<String>,
    pub tier: Option<ResourceTier>,
    pub contact_name: Option<String>,
    pub contact_email: Option<String>,
    /// ISO 3166 code; an empty string clears it. Platform admins only.
    pub tax_jurisdiction: Option<String>,
}

#[derive(InputObject)]
pub struct CreateResellerInput {
    pub name: String,
    pub tier: Option<ResellerTier>,
    pub contact_email: Option<String>,
}

//! Read-only fields. Each opens one transaction in the caller's scope.

use std::sync::Arc;

use async_graphql::connection::Connection;
use async_graphql::{Context, Object, ID};
use dotmac_schema::{
    ApiKeyId, AuditId, InvoiceId, MeterId, PlanId, ResellerId, SubscriptionId, TenantId, UserId,
};

use super::billing_types::{Invoice, Plan, Reconciliation, Subscription as BillingSubscription};
use super::types::{
    ApiKey, AuditEntry, AuditFilter, Meter, Reseller, Tenant, TenantBatch, TenantFilter,
    UsagePoint, User,
};
use super::{connection, ctx, page_request};
use crate::domain::{identity, parse_id};
use crate::store::billing as billing_rows;
use crate::store::{api_keys, audit, meters, resellers, tenants, users};

pub struct QueryRoot;

type Result<T> = async_graphql::Result<T>;

#[Object]
impl QueryRoot {
    /// The signed-in user.
    async fn me(&self, gctx: &Context<'_>) -> Result<User> {
        let (app, rc) = ctx(gctx);
        Ok(User(identity::me(app, rc).await?))
    }

    /// One tenant in the caller's scope; NOT_FOUND otherwise.
    async fn tenant(&self, gctx: &Context<'_>, id: ID) -> Result<Tenant> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: TenantId = parse_id("id", &id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = tenants::get(&tx, &p.scope, &id).await?;
        tx.commit().await?;
        Ok(Tenant::single(row))
    }

    /// Tenants in the caller's scope, oldest first.
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
        let filter = tenants::TenantFilter {
            state: filter.state,
            reseller_id: filter.reseller_id.map(|r| r.0),
            search: filter.search,
        };
        let node = gctx.look_ahead().field("edges").field("node");
        let with_counts = node.field("userCount").exists() || node.field("apiKeyCount").exists();
        let tx = app.store.begin(&p.scope).await?;
        let mut batch = TenantBatch::default();
        let rows = if with_counts {
            let page = tenants::list_with_counts(&tx, &p.scope, &filter, page).await?;
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
            tenants::list(&tx, &p.scope, &filter, page).await?
        };
        // Resellers of the whole page in one query, not one per tenant.
        if node.field("reseller").exists() {
            let mut ids: Vec<String> = rows
                .items
                .iter()
                .filter_map(|t| t.reseller_id.clone())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            batch.resellers = resellers::get_many(&tx, &p.scope, &ids)
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
        let row = resellers::get(&tx, &p.scope, &id).await?;
        tx.commit().await?;
        Ok(Reseller(row))
    }

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
        let rows = resellers::list(&tx, &p.scope, page).await?;
        tx.commit().await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            Reseller,
        ))
    }

    /// Users in the caller's scope.
    async fn users(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, User>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<UserId>(first, after.as_deref())?;
        let tx = app.store.begin(&p.scope).await?;
        let rows = users::list(&tx, &p.scope, page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), User))
    }

    /// API keys in the caller's scope, optionally of one tenant.
    async fn api_keys(
        &self,
        gctx: &Context<'_>,
        tenant_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, ApiKey>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<ApiKeyId>(first, after.as_deref())?;
        let tenant: Option<TenantId> = tenant_id.map(|t| parse_id("tenantId", &t)).transpose()?;
        let tx = app.store.begin(&p.scope).await?;
        if let Some(t) = &tenant {
            tenants::get(&tx, &p.scope, t).await?;
        }
        let rows =
            api_keys::list(&tx, &p.scope, tenant.as_ref().map(TenantId::as_str), page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), ApiKey))
    }

    /// Tax rates per jurisdiction, optionally of one (platform admins).
    async fn tax_rates(
        &self,
        gctx: &Context<'_>,
        jurisdiction: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, super::tax_types::TaxRate>> {
        let (app, rc) = ctx(gctx);
        let page = page_request::<dotmac_schema::TaxRateId>(first, after.as_deref())?;
        let rows =
            crate::domain::tax::list_tax_rates(app, rc, jurisdiction.as_deref(), page).await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            super::tax_types::TaxRate,
        ))
    }

    /// Plan versions: the whole catalogue for the platform; for tenants
    /// and resellers, the plans their subscriptions use.
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
    async fn subscriptions(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        tenant_id: Option<ID>,
    ) -> Result<Connection<String, BillingSubscription>> {
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
            BillingSubscription,
        ))
    }

    /// Invoices in the caller's scope, optionally of one tenant (resellers:
    /// their tenants' summaries).
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
        let p = rc.principal()?;
        let first = crate::domain::billing::parse_month(&month).ok_or_else(|| {
            crate::error::ApiError::validation("month", "must be a month such as 2026-11")
        })?;
        let report = crate::domain::reconcile::reconcile(app, &p.scope, first).await?;
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

    /// The meters that apply to the caller's tenants (today: every platform meter).
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
        let rows = meters::list(&tx, &p.scope, include_archived, page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), Meter))
    }

    async fn meter(&self, gctx: &Context<'_>, id: ID) -> Result<Meter> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let id: MeterId = parse_id("id", &id)?;
        let tx = app.store.begin(&p.scope).await?;
        let row = meters::get(&tx, &p.scope, &id).await?;
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
        let points = crate::domain::usage::query(
            app,
            rc,
            crate::domain::usage::UsageQuery {
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

    /// The audit log in the caller's scope, newest first.
    async fn audit_log(
        &self,
        gctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        filter: Option<AuditFilter>,
    ) -> Result<Connection<String, AuditEntry>> {
        let (app, rc) = ctx(gctx);
        let p = rc.principal()?;
        let page = page_request::<AuditId>(first, after.as_deref())?;
        let filter = filter.unwrap_or_default();
        let tx = app.store.begin(&p.scope).await?;
        if let Some(t) = &filter.tenant_id {
            let t: TenantId = parse_id("filter.tenantId", t)?;
            tenants::get(&tx, &p.scope, &t).await?;
        }
        let filter = audit::AuditFilter {
            tenant_id: filter.tenant_id.map(|t| t.0),
            action: filter.action,
            actor: filter.actor,
        };
        let rows = audit::list(&tx, &p.scope, &filter, page).await?;
        tx.commit().await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            AuditEntry,
        ))
    }
}

/// A `tenantId` argument checked against the caller's scope: NOT_FOUND when
/// outside it, whatever exists.
async fn tenant_in_scope(
    app: &crate::app::App,
    scope: &dotmac_schema::Scope,
    tenant_id: Option<&str>,
) -> Result<Option<String>> {
    let Some(t) = tenant_id else {
        return Ok(None);
    };
    let id: TenantId = parse_id("tenantId", t)?;
    let tx = app.store.begin(scope).await?;
    tenants::get(&tx, scope, &id).await?;
    tx.commit().await?;
    Ok(Some(id.to_string()))
}

//! The audit log over GraphQL: every change in the caller's scope, newest
//! first.

use async_graphql::connection::Connection;
use async_graphql::{Context, InputObject, Object, ID};
use chrono::{DateTime, Utc};
use dotmac_schema::{AuditId, TenantId};

use super::{connection, ctx, page_request, Result};
use crate::service::parse_id;
use crate::store::audit_log::{self, AuditRow};
use crate::store::tenant_rows;

#[derive(Default)]
pub struct AuditQuery;

#[Object]
impl AuditQuery {
    /// The audit log in the caller's scope, newest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
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
            tenant_rows::get(&tx, &p.scope, &t).await?;
        }
        let filter = audit_log::AuditFilter {
            tenant_id: filter.tenant_id.map(|t| t.0),
            action: filter.action,
            actor: filter.actor,
        };
        let rows = audit_log::list(&tx, &p.scope, &filter, page).await?;
        tx.commit().await?;
        Ok(connection(
            rows,
            after.is_some(),
            |r| r.id.clone(),
            AuditEntry,
        ))
    }
}

/// One append-only record of a change.
pub struct AuditEntry(pub AuditRow);

#[Object]
impl AuditEntry {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    /// The user or API key id that acted, or `anonymous`.
    async fn actor(&self) -> &str {
        &self.0.actor
    }
    async fn actor_role(&self) -> Option<&str> {
        self.0.actor_role.as_deref()
    }
    async fn scope(&self) -> &str {
        &self.0.scope
    }
    async fn tenant_id(&self) -> Option<ID> {
        self.0.tenant_id.clone().map(ID)
    }
    async fn action(&self) -> &str {
        &self.0.action
    }
    async fn object_id(&self) -> Option<&str> {
        self.0.object_id.as_deref()
    }
    async fn before(&self) -> Option<&str> {
        self.0.before_state.as_deref()
    }
    async fn after(&self) -> Option<&str> {
        self.0.after_state.as_deref()
    }
    async fn request_id(&self) -> Option<&str> {
        self.0.request_id.as_deref()
    }
}

#[derive(InputObject, Default)]
pub struct AuditFilter {
    pub tenant_id: Option<ID>,
    pub action: Option<String>,
    pub actor: Option<String>,
}

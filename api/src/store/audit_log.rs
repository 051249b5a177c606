//! The append-only audit log: one record per mutation, written in the
//! mutation's own transaction so that neither exists without the other.

use chrono::{DateTime, Utc};
use dotmac_schema::{AuditId, Principal, Scope};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::audit;
use super::{into_page, owned_by_tenant_in, Page, PageRequest, Tx};
use crate::error::ApiResult;

pub use audit::Model as AuditRow;

/// What a mutation changed.
#[derive(Debug, Default)]
pub struct AuditEntry<'a> {
    pub action: &'a str,
    pub tenant_id: Option<String>,
    pub reseller_id: Option<String>,
    pub object_id: Option<String>,
    pub before: Option<String>,
    pub after: Option<String>,
}

impl<'a> AuditEntry<'a> {
    /// An entry about a user: the object is the user, filed under the user's
    /// tenant or reseller so that their scope sees it.
    pub fn about_user(action: &'a str, user: &crate::store::user_rows::UserRow) -> Self {
        AuditEntry {
            action,
            tenant_id: user.tenant_id.clone(),
            reseller_id: user.reseller_id.clone(),
            object_id: Some(user.id.clone()),
            ..Default::default()
        }
    }
}

/// Who did it: the principal, or `anonymous` for login-like mutations.
pub async fn record(
    tx: &Tx,
    at: DateTime<Utc>,
    principal: Option<&Principal>,
    request_id: Option<&str>,
    entry: AuditEntry<'_>,
) -> ApiResult<()> {
    let scope = match principal.map(|p| &p.scope) {
        None => "none".to_owned(),
        Some(Scope::All) => "all".to_owned(),
        Some(Scope::Reseller(r)) => r.to_string(),
        Some(Scope::Tenant(t)) => t.to_string(),
    };
    let row = AuditRow {
        id: AuditId::new().to_string(),
        at,
        actor: principal.map_or_else(|| "anonymous".to_owned(), Principal::actor),
        actor_role: principal
            .and_then(|p| p.role())
            .map(|r| r.as_str().to_owned()),
        scope,
        tenant_id: entry.tenant_id,
        reseller_id: entry.reseller_id,
        action: entry.action.to_owned(),
        object_id: entry.object_id,
        before_state: entry.before,
        after_state: entry.after,
        request_id: request_id.map(str::to_owned),
    };
    audit::ActiveModel::from(row).reset_all().insert(tx).await?;
    Ok(())
}

#[derive(Debug, Default, Clone)]
pub struct AuditFilter {
    pub tenant_id: Option<String>,
    pub action: Option<String>,
    pub actor: Option<String>,
}

pub async fn list(
    tx: &Tx,
    scope: &Scope,
    filter: &AuditFilter,
    page: PageRequest<'_>,
) -> ApiResult<Page<AuditRow>> {
    let visible = match scope {
        Scope::All => Condition::all(),
        Scope::Reseller(r) => Condition::any()
            .add(owned_by_tenant_in(scope, audit::Column::TenantId))
            .add(
                Condition::all()
                    .add(audit::Column::TenantId.is_null())
                    .add(audit::Column::ResellerId.eq(r.as_str())),
            ),
        Scope::Tenant(t) => Condition::all().add(audit::Column::TenantId.eq(t.as_str())),
    };
    let mut q = audit::Entity::find().filter(visible);
    if let Some(t) = &filter.tenant_id {
        q = q.filter(audit::Column::TenantId.eq(t.as_str()));
    }
    if let Some(a) = &filter.action {
        q = q.filter(audit::Column::Action.eq(a.as_str()));
    }
    if let Some(a) = &filter.actor {
        q = q.filter(audit::Column::Actor.eq(a.as_str()));
    }
    // Newest first: ids are time-ordered.
    if let Some(after) = page.after {
        q = q.filter(audit::Column::Id.lt(after));
    }
    let rows = q
        .order_by_desc(audit::Column::Id)
        .limit(page.first + 1)
        .all(tx)
        .await?;
    Ok(into_page(rows, page.first))
}

//! Tenant rows: create, read, list with filters, update, and the batched
//! look-ups behind nested GraphQL fields (user and key counts).

use std::collections::HashMap;

use dotmac_schema::{Scope, TenantId, TenantState};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect,
};

use super::entity::{api_key, tenant, user};
use super::{into_page, owned_by_tenant_in, tenant_rows_in, Page, PageRequest, Tx};
use crate::error::{ApiError, ApiResult};

pub use tenant::Model as TenantRow;

/// Filters of the `tenants` list.
#[derive(Debug, Default, Clone)]
pub struct TenantFilter {
    pub state: Option<TenantState>,
    pub reseller_id: Option<String>,
    /// Case-insensitive match on name or slug.
    pub search: Option<String>,
}

pub async fn get(tx: &Tx, scope: &Scope, id: &TenantId) -> ApiResult<TenantRow> {
    tenant::Entity::find_by_id(id.as_str())
        .filter(tenant_rows_in(scope))
        .one(tx)
        .await?
        .ok_or(ApiError::not_found("tenant"))
}

/// A tenant with its user and live API key counts.
#[derive(Debug, Clone)]
pub struct TenantWithCounts {
    pub row: TenantRow,
    pub user_count: i64,
    pub api_key_count: i64,
}

impl FromQueryResult for TenantWithCounts {
    fn from_query_result(res: &sea_orm::QueryResult, pre: &str) -> Result<Self, sea_orm::DbErr> {
        Ok(TenantWithCounts {
            row: TenantRow::from_query_result(res, pre)?,
            user_count: res.try_get(pre, "user_count")?,
            api_key_count: res.try_get(pre, "api_key_count")?,
        })
    }
}

/// The counts of a page ride along as scalar subqueries: one round trip for
/// the page instead of one per tenant (or one per count).
pub async fn list_with_counts(
    tx: &Tx,
    scope: &Scope,
    filter: &TenantFilter,
    page: PageRequest<'_>,
) -> ApiResult<Page<TenantWithCounts>> {
    let rows = list_query(scope, filter, page)
        .column_as(
            Expr::cust("(SELECT count(*) FROM users u WHERE u.tenant_id = tenants.id)"),
            "user_count",
        )
        .column_as(
            Expr::cust(
                "(SELECT count(*) FROM api_keys k WHERE k.tenant_id = tenants.id AND k.revoked_at IS NULL)",
            ),
            "api_key_count",
        )
        .into_model::<TenantWithCounts>()
        .all(tx)
        .await?;
    Ok(into_page(rows, page.first))
}

pub async fn list(
    tx: &Tx,
    scope: &Scope,
    filter: &TenantFilter,
    page: PageRequest<'_>,
) -> ApiResult<Page<TenantRow>> {
    let rows = list_query(scope, filter, page).all(tx).await?;
    Ok(into_page(rows, page.first))
}

fn list_query(
    scope: &Scope,
    filter: &TenantFilter,
    page: PageRequest<'_>,
) -> sea_orm::Select<tenant::Entity> {
    let mut cond = tenant_rows_in(scope);
    if let Some(state) = filter.state {
        cond = cond.add(tenant::Column::State.eq(state));
    }
    if let Some(r) = &filter.reseller_id {
        cond = cond.add(tenant::Column::ResellerId.eq(r.as_str()));
    }
    if let Some(s) = filter.search.as_deref().filter(|s| !s.is_empty()) {
        let pattern = format!("%{}%", s.to_lowercase().replace(['%', '_'], ""));
        cond = cond.add(
            Condition::any()
                .add(Expr::expr(Func::lower(Expr::col(tenant::Column::Name))).like(&pattern))
                .add(tenant::Column::Slug.like(&pattern)),
        );
    }
    if let Some(after) = page.after {
        cond = cond.add(tenant::Column::Id.gt(after));
    }
    tenant::Entity::find()
        .filter(cond)
        .order_by_asc(tenant::Column::Id)
        .limit(page.first + 1)
}

pub async fn insert(tx: &Tx, row: TenantRow) -> ApiResult<TenantRow> {
    let active: tenant::ActiveModel = row.into();
    active.insert(tx).await.map_err(|e| {
        if super::is_unique_violation(&e) {
            ApiError::conflict("input.slug", "a tenant with this slug already exists")
        } else {
            e.into()
        }
    })
}

/// Writes only the columns set in `changes` (so a concurrent state change is
/// not overwritten), for a tenant visible in `scope`.
pub async fn update_columns(
    tx: &Tx,
    scope: &Scope,
    id: &TenantId,
    changes: tenant::ActiveModel,
) -> ApiResult<TenantRow> {
    tenant::Entity::update_many()
        .set(changes)
        .filter(tenant::Column::Id.eq(id.as_str()))
        .filter(tenant_rows_in(scope))
        .exec(tx)
        .await
        .map_err(|e| {
            if super::is_unique_violation(&e) {
                ApiError::conflict("input.slug", "a tenant with this slug already exists")
            } else {
                e.into()
            }
        })?;
    get(tx, scope, id).await
}

/// Moves a tenant from `from` to `to` only if it is still in `from`; false
/// when a concurrent transition got there first.
pub async fn compare_and_set_state(
    tx: &Tx,
    scope: &Scope,
    id: &TenantId,
    from: TenantState,
    to: TenantState,
    reason: Option<String>,
    at: chrono::DateTime<chrono::Utc>,
) -> ApiResult<bool> {
    let done = tenant::Entity::update_many()
        .col_expr(tenant::Column::State, Expr::value(to))
        .col_expr(tenant::Column::StateReason, Expr::value(reason))
        .col_expr(tenant::Column::UpdatedAt, Expr::value(at))
        .col_expr(tenant::Column::StateChangedAt, Expr::value(at))
        .filter(tenant::Column::Id.eq(id.as_str()))
        .filter(tenant::Column::State.eq(from))
        .filter(tenant_rows_in(scope))
        .exec(tx)
        .await?;
    Ok(done.rows_affected == 1)
}

#[derive(FromQueryResult)]
struct CountRow {
    tenant_id: String,
    n: i64,
}

/// Number of users and of live API keys per tenant, in two grouped queries.
pub async fn counts(
    tx: &Tx,
    scope: &Scope,
    ids: &[String],
) -> ApiResult<(HashMap<String, i64>, HashMap<String, i64>)> {
    if ids.is_empty() {
        return Ok(Default::default());
    }
    let users: Vec<CountRow> = user::Entity::find()
        .select_only()
        .column_as(user::Column::TenantId, "tenant_id")
        .column_as(user::Column::Id.count(), "n")
        .filter(user::Column::TenantId.is_in(ids.iter().map(String::as_str)))
        .filter(owned_by_tenant_in(scope, user::Column::TenantId))
        .group_by(user::Column::TenantId)
        .into_model()
        .all(tx)
        .await?;
    let keys: Vec<CountRow> = api_key::Entity::find()
        .select_only()
        .column_as(api_key::Column::TenantId, "tenant_id")
        .column_as(api_key::Column::Id.count(), "n")
        .filter(api_key::Column::TenantId.is_in(ids.iter().map(String::as_str)))
        .filter(api_key::Column::RevokedAt.is_null())
        .filter(owned_by_tenant_in(scope, api_key::Column::TenantId))
        .group_by(api_key::Column::TenantId)
        .into_model()
        .all(tx)
        .await?;
    let to_map = |rows: Vec<CountRow>| rows.into_iter().map(|r| (r.tenant_id, r.n)).collect();
    Ok((to_map(users), to_map(keys)))
}

/// Tenants (platform-wide: the orchestrator's question) that have been
/// provisioning since before `cutoff`, oldest first, at most `limit`.
pub async fn provisioning_since_before(
    tx: &Tx,
    cutoff: chrono::DateTime<chrono::Utc>,
    limit: u64,
) -> ApiResult<Vec<TenantRow>> {
    Ok(tenant::Entity::find()
        .filter(tenant_rows_in(&Scope::All))
        .filter(tenant::Column::State.eq(TenantState::Provisioning))
        .filter(tenant::Column::StateChangedAt.lt(cutoff))
        .order_by_asc(tenant::Column::StateChangedAt)
        .limit(limit)
        .all(tx)
        .await?)
}

//! GraphQL object and input types, built from store rows. Nested fields of
//! tenants (reseller, counts) are prefetched in batches by the list resolver.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::{ComplexObject, Context, Enum, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use dotmac_schema::{ApiKeyScope, ResellerId, ResourceTier, Role, TenantAction, TenantState};

use super::ctx;
use crate::error::ApiResult;
use crate::events::TenantEvent as BusTenantEvent;
use crate::store::api_keys::ApiKeyRow;
use crate::store::audit::AuditRow;
use crate::store::resellers::{self, ResellerRow};
use crate::store::tenants::{self, TenantRow};
use crate::store::tokens::InvitationRow;
use crate::store::users::UserRow;

/// Data looked up once for a whole page of tenants.
#[derive(Default)]
pub struct TenantBatch {
    pub resellers: HashMap<String, ResellerRow>,
    pub user_counts: HashMap<String, i64>,
    pub api_key_counts: HashMap<String, i64>,
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
            tenants::counts(&tx, &p.scope, std::slice::from_ref(&self.row.id)).await?;
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
        TenantState::parse(&self.row.state).unwrap_or(TenantState::Failed)
    }
    /// Why the tenant is in its state (suspension or cancellation reason).
    async fn state_reason(&self) -> Option<&str> {
        self.row.state_reason.as_deref()
    }
    async fn tier(&self) -> ResourceTier {
        ResourceTier::parse(&self.row.tier).unwrap_or_default()
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
        let found = resellers::get(&tx, &p.scope, &id).await.ok();
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
    /// bronze, silver, gold or platinum.
    async fn tier(&self) -> &str {
        &self.0.tier
    }
    async fn contact_email(&self) -> Option<&str> {
        self.0.contact_email.as_deref()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A person who signs in to one of the portals.
pub struct User(pub UserRow);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn role(&self) -> Option<Role> {
        Role::parse(&self.0.role)
    }
    async fn tenant_id(&self) -> Option<ID> {
        self.0.tenant_id.clone().map(ID)
    }
    async fn reseller_id(&self) -> Option<ID> {
        self.0.reseller_id.clone().map(ID)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
}

/// A service credential bound to one tenant; the secret is never shown again.
pub struct ApiKey(pub ApiKeyRow);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn tenant_id(&self) -> ID {
        ID(self.0.tenant_id.clone())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The public start of the key, for recognising it.
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn scopes(&self) -> Vec<ApiKeyScope> {
        self.0
            .scopes
            .split(',')
            .filter_map(ApiKeyScope::parse)
            .collect()
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
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

/// Tokens of a signed-in session.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    #[graphql(skip)]
    pub user: UserRow,
}

#[ComplexObject]
impl AuthPayload {
    async fn user(&self) -> User {
        User(self.user.clone())
    }
}

/// A pending invitation.
pub struct Invitation(pub InvitationRow);

#[Object]
impl Invitation {
    async fn id(&self) -> ID {
        ID(self.0.id.clone())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> Option<Role> {
        Role::parse(&self.0.role)
    }
    async fn tenant_id(&self) -> Option<ID> {
        self.0.tenant_id.clone().map(ID)
    }
    async fn reseller_id(&self) -> Option<ID> {
        self.0.reseller_id.clone().map(ID)
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
}

#[derive(SimpleObject)]
pub struct InvitationPayload {
    pub invitation: Invitation,
    /// Send this to the invitee; it is not shown again.
    pub token: String,
}

#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    /// The whole key. Shown once: only its hash is kept.
    pub secret: String,
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

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum ResellerTier {
    Bronze,
    Silver,
    Gold,
    Platinum,
}

impl ResellerTier {
    pub fn as_str(self) -> &'static str {
        match self {
            ResellerTier::Bronze => "bronze",
            ResellerTier::Silver => "silver",
            ResellerTier::Gold => "gold",
            ResellerTier::Platinum => "platinum",
        }
    }
}

#[derive(InputObject)]
pub struct InviteUserInput {
    pub email: String,
    pub role: Role,
    /// Required for tenant roles unless the inviter is in a tenant scope.
    pub tenant_id: Option<ID>,
    /// Required for reseller roles unless the inviter is a reseller user.
    pub reseller_id: Option<ID>,
}

#[derive(InputObject, Default)]
pub struct AuditFilter {
    pub tenant_id: Option<ID>,
    pub action: Option<String>,
    pub actor: Option<String>,
}

/// What the platform meters: events of one type, aggregated per window.
pub struct Meter(pub crate::store::meters::MeterRow);

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
        Ok(crate::domain::meters::definition(&self.0)?.aggregation)
    }
    /// Dot-separated path into the event's `data` (null for COUNT).
    async fn value_path(&self) -> Option<&str> {
        self.0.value_path.as_deref()
    }
    async fn group_by(&self) -> async_graphql::Result<Vec<String>> {
        Ok(crate::domain::meters::definition(&self.0)?.group_by)
    }
    async fn window(&self) -> async_graphql::Result<dotmac_schema::usage::Window> {
        Ok(crate::domain::meters::definition(&self.0)?.window)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Set once the meter stops counting new events.
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
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
pub struct UsagePoint(pub crate::domain::usage::UsagePoint);

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

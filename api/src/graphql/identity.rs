//! Identity's GraphQL: the signed-in user, sign-in and sessions, users and
//! invitations, and tenants' API keys, with their views and inputs.

use async_graphql::connection::Connection;
use async_graphql::{ComplexObject, Context, InputObject, Object, SimpleObject, ID};
use chrono::{DateTime, Utc};
use dotmac_schema::{ApiKeyId, ApiKeyScope, Role, TenantId, UserId};

use super::{connection, ctx, page_request, Result};
use crate::service::identity::api_keys;
use crate::service::identity::sessions::{self, Session};
use crate::service::identity::users::{self, NewInvitation};
use crate::service::parse_id;
use crate::store::api_key_rows::{self as api_key_rows, ApiKeyRow};
use crate::store::tenant_rows;
use crate::store::token_rows::InvitationRow;
use crate::store::user_rows::{self as user_rows, UserRow};

#[derive(Default)]
pub struct IdentityQuery;

#[Object]
impl IdentityQuery {
    /// The signed-in user.
    async fn me(&self, gctx: &Context<'_>) -> Result<User> {
        let (app, rc) = ctx(gctx);
        Ok(User(users::me(&app.identity, rc).await?))
    }

    /// Users in the caller's scope.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
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
        let rows = user_rows::list(&tx, &p.scope, page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), User))
    }

    /// API keys in the caller's scope, optionally of one tenant.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
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
            tenant_rows::get(&tx, &p.scope, t).await?;
        }
        let rows =
            api_key_rows::list(&tx, &p.scope, tenant.as_ref().map(TenantId::as_str), page).await?;
        tx.commit().await?;
        Ok(connection(rows, after.is_some(), |r| r.id.clone(), ApiKey))
    }
}

#[derive(Default)]
pub struct IdentityMutation;

#[Object]
impl IdentityMutation {
    /// Signs in; after 5 failures the account is locked for 30 minutes.
    async fn login(
        &self,
        gctx: &Context<'_>,
        email: String,
        password: String,
    ) -> Result<AuthPayload> {
        let (app, rc) = ctx(gctx);
        Ok(payload(
            sessions::login(&app.identity, rc, &email, &password).await?,
        ))
    }

    /// Exchanges a refresh token for a new pair; the old one stops working.
    async fn refresh_token(
        &self,
        gctx: &Context<'_>,
        refresh_token: String,
    ) -> Result<AuthPayload> {
        let (app, rc) = ctx(gctx);
        Ok(payload(
            sessions::refresh(&app.identity, rc, &refresh_token).await?,
        ))
    }

    /// Revokes the session of this refresh token.
    async fn logout(&self, gctx: &Context<'_>, refresh_token: String) -> Result<bool> {
        let (app, rc) = ctx(gctx);
        Ok(sessions::logout(&app.identity, rc, &refresh_token).await?)
    }

    async fn change_password(
        &self,
        gctx: &Context<'_>,
        current_password: String,
        new_password: String,
    ) -> Result<bool> {
        let (app, rc) = ctx(gctx);
        Ok(users::change_password(&app.identity, rc, &current_password, &new_password).await?)
    }

    /// Invites a user with a role in the inviter's scope; returns a one-time token.
    async fn invite_user(
        &self,
        gctx: &Context<'_>,
        input: InviteUserInput,
    ) -> Result<InvitationPayload> {
        let (app, rc) = ctx(gctx);
        let (row, token) = users::invite(
            &app.identity,
            rc,
            NewInvitation {
                email: input.email,
                role: input.role,
                tenant_id: input.tenant_id.map(|t| t.0),
                reseller_id: input.reseller_id.map(|r| r.0),
            },
        )
        .await?;
        Ok(InvitationPayload {
            invitation: Invitation(row),
            token,
        })
    }

    /// Sets the invitee's password and signs them in.
    async fn accept_invitation(
        &self,
        gctx: &Context<'_>,
        token: String,
        password: String,
        name: Option<String>,
    ) -> Result<AuthPayload> {
        let (app, rc) = ctx(gctx);
        Ok(payload(
            users::accept_invitation(&app.identity, rc, &token, &password, name.as_deref()).await?,
        ))
    }

    /// A new API key for a tenant; the secret is in the answer and nowhere else.
    async fn create_api_key(
        &self,
        gctx: &Context<'_>,
        tenant_id: ID,
        scopes: Vec<ApiKeyScope>,
        name: Option<String>,
    ) -> Result<CreatedApiKey> {
        let (app, rc) = ctx(gctx);
        let (row, secret) =
            api_keys::create(&app.identity, rc, &tenant_id, name.as_deref(), &scopes).await?;
        Ok(CreatedApiKey {
            api_key: ApiKey(row),
            secret,
        })
    }

    async fn revoke_api_key(&self, gctx: &Context<'_>, id: ID) -> Result<ApiKey> {
        let (app, rc) = ctx(gctx);
        Ok(ApiKey(api_keys::revoke(&app.identity, rc, &id).await?))
    }
}

fn payload(s: Session) -> AuthPayload {
    AuthPayload {
        access_token: s.access_token,
        refresh_token: s.refresh_token,
        expires_in: s.expires_in,
        user: s.user,
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

#[derive(InputObject)]
pub struct InviteUserInput {
    pub email: String,
    pub role: Role,
    /// Required for tenant roles unless the inviter is in a tenant scope.
    pub tenant_id: Option<ID>,
    /// Required for reseller roles unless the inviter is a reseller user.
    pub reseller_id: Option<ID>,
}

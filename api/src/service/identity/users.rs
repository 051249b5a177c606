//! Users: the signed-in user, password changes, invitations (and signing
//! in the invitee), and users created by operators.

use chrono::Duration;
use dotmac_schema::{InvitationId, ResellerId, Role, Scope, TenantId, UserId};

use super::Identity;
use crate::auth::{self, hash_password, hash_secret, random_token, verify_password};
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::service::{email, parse_id};
use crate::store::audit_log::{self, AuditEntry};
use crate::store::token_rows::{self, InvitationRow};
use crate::store::user_rows::{self, UserRow};
use crate::store::{reseller_rows, tenant_rows};

use super::scope_reseller;
use super::sessions::{open_session, Session};

pub async fn me(identity: &Identity, ctx: &RequestCtx) -> ApiResult<UserRow> {
    let p = ctx.principal()?;
    let id = p
        .user_id()
        .ok_or_else(|| ApiError::Forbidden("API keys have no user".into()))?;
    let tx = identity.store.begin(&p.scope).await?;
    let user = user_rows::get(&tx, &p.scope, id).await?;
    tx.commit().await?;
    Ok(user)
}

/// Any signed-in user, read-only ones included, may change their own password.
pub async fn change_password(
    identity: &Identity,
    ctx: &RequestCtx,
    current: &str,
    new: &str,
) -> ApiResult<bool> {
    let p = ctx.principal()?;
    let id = p
        .user_id()
        .ok_or_else(|| ApiError::Forbidden("API keys have no password".into()))?;
    auth::check_password_strength("newPassword", new)?;
    let tx = identity.store.begin(&p.scope).await?;
    let user = user_rows::get(&tx, &p.scope, id).await?;
    tx.commit().await?;
    // Hashing happens outside any transaction (it is slow on purpose).
    if !verify_password(current.to_owned(), user.password_hash.clone()).await? {
        return Err(ApiError::validation(
            "currentPassword",
            "is not the current password",
        ));
    }
    let hash = hash_password(new.to_owned()).await?;
    let tx = identity.store.begin(&p.scope).await?;
    user_rows::set_password(&tx, &user, hash).await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("user.change_password", &user),
    )
    .await?;
    tx.commit().await?;
    // Every other session of the user ends: refresh tokens are readable only
    // on the authentication path, hence the system transaction.
    let tx = identity.store.begin_system().await?;
    token_rows::revoke_all_of_user(&tx, &user.id, identity.clock.now()).await?;
    user_rows::next_token_generation(&tx, &user.id).await?;
    tx.commit().await?;
    identity.standing.forget_user(&user.id);
    Ok(true)
}

pub struct NewInvitation {
    pub email: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub reseller_id: Option<String>,
}

pub async fn invite(
    identity: &Identity,
    ctx: &RequestCtx,
    input: NewInvitation,
) -> ApiResult<(InvitationRow, String)> {
    let p = ctx.writer()?;
    let role = p
        .role()
        .ok_or_else(|| ApiError::Forbidden("API keys cannot invite".into()))?;
    if !role.may_grant(input.role) {
        return Err(ApiError::Forbidden(format!(
            "a {} may not grant {}",
            role.as_str(),
            input.role.as_str()
        )));
    }
    let email_v = email("input.email", &input.email)?;
    let tx = identity.store.begin(&p.scope).await?;
    use dotmac_schema::auth::ScopeKind;
    // The binding must fit the role and lie inside the inviter's scope.
    let (tenant_id, reseller_id) = match input.role.scope_kind() {
        ScopeKind::Platform => (None, None),
        ScopeKind::Reseller => {
            let raw = input.reseller_id.as_deref().or(match &p.scope {
                Scope::Reseller(r) => Some(r.as_str()),
                _ => None,
            });
            let raw = raw.ok_or_else(|| {
                ApiError::validation("input.resellerId", "is required for a reseller role")
            })?;
            let r: ResellerId = parse_id("input.resellerId", raw)?;
            reseller_rows::get(&tx, &p.scope, &r).await?;
            (None, Some(r.to_string()))
        }
        ScopeKind::Tenant => {
            let raw = input.tenant_id.as_deref().or(match &p.scope {
                Scope::Tenant(t) => Some(t.as_str()),
                _ => None,
            });
            let raw = raw.ok_or_else(|| {
                ApiError::validation("input.tenantId", "is required for a tenant role")
            })?;
            let t: TenantId = parse_id("input.tenantId", raw)?;
            tenant_rows::get(&tx, &p.scope, &t).await?;
            (Some(t.to_string()), None)
        }
    };
    let token = random_token();
    let now = identity.clock.now();
    let row = token_rows::insert_invitation(
        &tx,
        InvitationRow {
            id: InvitationId::new().to_string(),
            email: email_v,
            role: input.role.as_str().to_owned(),
            tenant_id: tenant_id.clone(),
            reseller_id: reseller_id.clone(),
            token_hash: hash_secret(&token),
            invited_by: p.actor(),
            expires_at: now + Duration::days(identity.settings.invitation_days),
            accepted_at: None,
            created_at: now,
        },
    )
    .await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "user.invite",
            tenant_id,
            reseller_id: reseller_id.or_else(|| scope_reseller(&p.scope)),
            object_id: Some(row.id.clone()),
            after: Some(row.role.clone()),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok((row, token))
}

/// Turns an invitation into a user with the chosen password, and signs them in.
pub async fn accept_invitation(
    identity: &Identity,
    ctx: &RequestCtx,
    token: &str,
    password: &str,
    name: Option<&str>,
) -> ApiResult<Session> {
    auth::check_password_strength("password", password)?;
    let invalid = || ApiError::validation("token", "invitation is unknown, used or expired");
    // The token is looked up before the password is hashed: a guessed token
    // costs one indexed read, not an argon2 run.
    let tx = identity.store.begin_system().await?;
    let inv = token_rows::find_invitation_system(&tx, &hash_secret(token)).await?;
    tx.commit().await?;
    let inv = inv.ok_or_else(invalid)?;
    let now = identity.clock.now();
    if inv.accepted_at.is_some() || inv.expires_at <= now {
        return Err(invalid());
    }
    if let Some(tenant) = &inv.tenant_id {
        let tenant: TenantId = parse_id("token", tenant)?;
        super::standing::tenant_access(identity, &Scope::Tenant(tenant)).await?;
    }
    // Outside any transaction: it is slow on purpose.
    let password_hash = hash_password(password.to_owned()).await?;
    let tx = identity.store.begin_system().await?;
    if !token_rows::mark_accepted(&tx, &inv, now).await? {
        return Err(invalid());
    }
    let user = user_rows::insert(
        &tx,
        UserRow {
            id: UserId::new().to_string(),
            email: inv.email.clone(),
            name: name
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            password_hash,
            role: inv.role.clone(),
            tenant_id: inv.tenant_id.clone(),
            reseller_id: inv.reseller_id.clone(),
            created_at: now,
            token_generation: 0,
        },
    )
    .await?;
    let principal = auth::user_principal(&user)?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(&principal),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("user.accept_invitation", &user),
    )
    .await?;
    let session = open_session(identity, &tx, user, None).await?;
    tx.commit().await?;
    Ok(session)
}

/// Creates a user directly (bootstrap and demo seeding; not exposed to GraphQL).
pub async fn create_user_system(
    identity: &Identity,
    email_in: &str,
    password: &str,
    role: Role,
    tenant_id: Option<String>,
    reseller_id: Option<String>,
) -> ApiResult<UserRow> {
    let email_v = email("email", email_in)?;
    auth::check_password_strength("password", password)?;
    if auth::scope_for(role, tenant_id.as_deref(), reseller_id.as_deref()).is_none() {
        return Err(ApiError::validation(
            "role",
            "does not fit the given tenant/reseller",
        ));
    }
    let password_hash = hash_password(password.to_owned()).await?;
    let tx = identity.store.begin_system().await?;
    let user = user_rows::insert(
        &tx,
        UserRow {
            id: UserId::new().to_string(),
            email: email_v,
            name: None,
            password_hash,
            role: role.as_str().to_owned(),
            tenant_id,
            reseller_id,
            created_at: identity.clock.now(),
            token_generation: 0,
        },
    )
    .await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        None,
        None,
        AuditEntry {
            after: Some(user.role.clone()),
            ..AuditEntry::about_user("user.bootstrap", &user)
        },
    )
    .await?;
    tx.commit().await?;
    Ok(user)
}

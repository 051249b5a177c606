//! Sign-in and identity: login with lockout, rotating refresh tokens,
//! logout, password changes, invitations and the API-key credential check.

use chrono::Duration;
use dotmac_schema::{
    ApiKeyScope, InvitationId, Principal, PrincipalKind, ResellerId, Role, Scope, TenantId, UserId,
};

use super::{email, parse_id};
use crate::app::{App, RequestCtx};
use crate::auth::{self, hash_password, hash_secret, random_token, verify_password};
use crate::error::{ApiError, ApiResult};
use crate::ratelimit::Rate;
use crate::store::audit::{self, AuditEntry};
use crate::store::tokens::{self, InvitationRow, RefreshRow};
use crate::store::users::{self, UserRow};
use crate::store::{api_keys, resellers, tenants, Tx};

/// Tokens handed to a signed-in user.
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub user: UserRow,
}

/// One message for every failed sign-in, so that it says nothing about which
/// part was wrong.
fn bad_credentials() -> ApiError {
    ApiError::Unauthenticated("invalid email or password".into())
}

pub async fn login(
    app: &App,
    ctx: &RequestCtx,
    email_in: &str,
    password: &str,
) -> ApiResult<Session> {
    let ip = ctx
        .client_ip
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let per_minute = app.config.limits.login_per_minute;
    app.limiter
        .check(
            &format!("login:{ip}"),
            Rate {
                per_minute,
                burst: per_minute,
            },
        )
        .await?;
    let email_in = email_in.trim().to_lowercase();
    let now = app.clock.now();
    // Step 1, short transaction: count the attempt before the password is
    // checked, so parallel guesses cannot all slip under the lockout.
    let tx = app.store.begin_system().await?;
    let Some(found) = users::find_by_email_system(&tx, &email_in).await? else {
        tx.commit().await?;
        // Spend the same time as a real check so timing does not reveal accounts.
        let _ = hash_password(password.to_owned()).await;
        return Err(bad_credentials());
    };
    let user = users::reserve_attempt(&tx, &found.id, now).await?;
    if user.locked_until.is_some_and(|u| u > now) {
        // The same answer as a wrong password: no account oracle.
        tx.commit().await?;
        return Err(bad_credentials());
    }
    if user.failed_logins > app.config.auth.lockout_failures {
        let until = now + Duration::minutes(app.config.auth.lockout_minutes);
        users::lock(&tx, &user.id, until).await?;
        audit::record(
            &tx,
            app.clock.now(),
            None,
            ctx.request_id.as_deref(),
            AuditEntry::about_user("auth.locked", &user),
        )
        .await?;
        tx.commit().await?;
        return Err(bad_credentials());
    }
    tx.commit().await?;
    // Step 2, outside any transaction: the deliberately slow hash check
    // must not hold a pooled connection.
    let ok = verify_password(password.to_owned(), user.password_hash.clone()).await?;
    // Step 3: record the outcome.
    let tx = app.store.begin_system().await?;
    if !ok {
        audit::record(
            &tx,
            app.clock.now(),
            None,
            ctx.request_id.as_deref(),
            AuditEntry::about_user("auth.login_failed", &user),
        )
        .await?;
        tx.commit().await?;
        return Err(bad_credentials());
    }
    users::record_success(&tx, &user.id).await?;
    let principal = auth::user_principal(&user)?;
    let session = open_session(app, &tx, user, None).await?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(&principal),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("auth.login", &session.user),
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

/// Issues an access token and a refresh token (in `family`, or a new one).
async fn open_session(
    app: &App,
    tx: &Tx,
    user: UserRow,
    family: Option<String>,
) -> ApiResult<Session> {
    let refresh = random_token();
    let now = app.clock.now();
    tokens::insert_refresh(
        tx,
        RefreshRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            family_id: family.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
            token_hash: hash_secret(&refresh),
            expires_at: now + Duration::days(app.config.auth.refresh_token_days),
            revoked_at: None,
            created_at: now,
        },
    )
    .await?;
    Ok(Session {
        access_token: app.keys.issue(&user)?,
        refresh_token: refresh,
        expires_in: app.keys.access_ttl.num_seconds(),
        user,
    })
}

/// Rotates a refresh token. Presenting one that was already rotated means it
/// leaked: the whole family is revoked.
pub async fn refresh(app: &App, ctx: &RequestCtx, token: &str) -> ApiResult<Session> {
    let invalid = || ApiError::Unauthenticated("invalid or expired refresh token".into());
    let tx = app.store.begin_system().await?;
    let row = tokens::find_refresh(&tx, &hash_secret(token))
        .await?
        .ok_or_else(invalid)?;
    let now = app.clock.now();
    // A token already rotated (or rotated by a concurrent request right now)
    // has leaked: end the whole family.
    let reused = row.revoked_at.is_some() || {
        row.expires_at > now && !tokens::revoke_if_live(&tx, &row, now).await?
    };
    if reused {
        tokens::revoke_family(&tx, &row.family_id, now).await?;
        audit::record(
            &tx,
            app.clock.now(),
            None,
            ctx.request_id.as_deref(),
            AuditEntry {
                action: "auth.refresh_reuse",
                object_id: Some(row.user_id.clone()),
                ..Default::default()
            },
        )
        .await?;
        tx.commit().await?;
        return Err(invalid());
    }
    if row.expires_at <= now {
        return Err(invalid());
    }
    let user_id: UserId = parse_id("refreshToken", &row.user_id)?;
    let user = users::get(&tx, &Scope::All, &user_id).await?;
    let session = open_session(app, &tx, user, Some(row.family_id.clone())).await?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(&auth::user_principal(&session.user)?),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("auth.refresh", &session.user),
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

/// Revokes the refresh token's family. Needs the caller signed in as its owner.
pub async fn logout(app: &App, ctx: &RequestCtx, token: &str) -> ApiResult<bool> {
    let p = ctx.principal()?;
    let tx = app.store.begin_system().await?;
    let Some(row) = tokens::find_refresh(&tx, &hash_secret(token)).await? else {
        return Ok(false);
    };
    if Some(row.user_id.as_str()) != p.user_id().map(UserId::as_str) {
        return Ok(false);
    }
    tokens::revoke_family(&tx, &row.family_id, app.clock.now()).await?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "auth.logout",
            object_id: Some(row.user_id.clone()),
            tenant_id: scope_tenant(&p.scope),
            reseller_id: scope_reseller(&p.scope),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn me(app: &App, ctx: &RequestCtx) -> ApiResult<UserRow> {
    let p = ctx.principal()?;
    let id = p
        .user_id()
        .ok_or_else(|| ApiError::Forbidden("API keys have no user".into()))?;
    let tx = app.store.begin(&p.scope).await?;
    let user = users::get(&tx, &p.scope, id).await?;
    tx.commit().await?;
    Ok(user)
}

/// Any signed-in user, read-only ones included, may change their own password.
pub async fn change_password(
    app: &App,
    ctx: &RequestCtx,
    current: &str,
    new: &str,
) -> ApiResult<bool> {
    let p = ctx.principal()?;
    let id = p
        .user_id()
        .ok_or_else(|| ApiError::Forbidden("API keys have no password".into()))?;
    auth::check_password_strength("newPassword", new)?;
    let tx = app.store.begin(&p.scope).await?;
    let user = users::get(&tx, &p.scope, id).await?;
    tx.commit().await?;
    // Hashing happens outside any transaction (it is slow on purpose).
    if !verify_password(current.to_owned(), user.password_hash.clone()).await? {
        return Err(ApiError::validation(
            "currentPassword",
            "is not the current password",
        ));
    }
    let hash = hash_password(new.to_owned()).await?;
    let tx = app.store.begin(&p.scope).await?;
    users::set_password(&tx, &user, hash).await?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("user.change_password", &user),
    )
    .await?;
    tx.commit().await?;
    // Every other session of the user ends: refresh tokens are readable only
    // on the authentication path, hence the system transaction.
    let tx = app.store.begin_system().await?;
    tokens::revoke_all_of_user(&tx, &user.id, app.clock.now()).await?;
    tx.commit().await?;
    Ok(true)
}

pub fn scope_tenant(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Tenant(t) => Some(t.to_string()),
        _ => None,
    }
}

pub fn scope_reseller(scope: &Scope) -> Option<String> {
    match scope {
        Scope::Reseller(r) => Some(r.to_string()),
        _ => None,
    }
}

pub struct NewInvitation {
    pub email: String,
    pub role: Role,
    pub tenant_id: Option<String>,
    pub reseller_id: Option<String>,
}

pub async fn invite(
    app: &App,
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
    let tx = app.store.begin(&p.scope).await?;
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
            resellers::get(&tx, &p.scope, &r).await?;
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
            tenants::get(&tx, &p.scope, &t).await?;
            (Some(t.to_string()), None)
        }
    };
    let token = random_token();
    let now = app.clock.now();
    let row = tokens::insert_invitation(
        &tx,
        InvitationRow {
            id: InvitationId::new().to_string(),
            email: email_v,
            role: input.role.as_str().to_owned(),
            tenant_id: tenant_id.clone(),
            reseller_id: reseller_id.clone(),
            token_hash: hash_secret(&token),
            invited_by: p.actor(),
            expires_at: now + Duration::days(app.config.auth.invitation_days),
            accepted_at: None,
            created_at: now,
        },
    )
    .await?;
    audit::record(
        &tx,
        app.clock.now(),
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
    app: &App,
    ctx: &RequestCtx,
    token: &str,
    password: &str,
    name: Option<&str>,
) -> ApiResult<Session> {
    auth::check_password_strength("password", password)?;
    let invalid = || ApiError::validation("token", "invitation is unknown, used or expired");
    // Hash before the transaction: it is slow on purpose.
    let password_hash = hash_password(password.to_owned()).await?;
    let tx = app.store.begin_system().await?;
    let inv = tokens::find_invitation_system(&tx, &hash_secret(token))
        .await?
        .ok_or_else(invalid)?;
    let now = app.clock.now();
    if inv.accepted_at.is_some() || inv.expires_at <= now {
        return Err(invalid());
    }
    let user = users::insert(
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
            failed_logins: 0,
            locked_until: None,
            created_at: now,
        },
    )
    .await?;
    tokens::mark_accepted(&tx, &inv, now).await?;
    let principal = auth::user_principal(&user)?;
    audit::record(
        &tx,
        app.clock.now(),
        Some(&principal),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("user.accept_invitation", &user),
    )
    .await?;
    let session = open_session(app, &tx, user, None).await?;
    tx.commit().await?;
    Ok(session)
}

/// Creates a user directly (bootstrap and demo seeding; not exposed to GraphQL).
pub async fn create_user_system(
    app: &App,
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
    let tx = app.store.begin_system().await?;
    let user = users::insert(
        &tx,
        UserRow {
            id: UserId::new().to_string(),
            email: email_v,
            name: None,
            password_hash,
            role: role.as_str().to_owned(),
            tenant_id,
            reseller_id,
            failed_logins: 0,
            locked_until: None,
            created_at: app.clock.now(),
        },
    )
    .await?;
    audit::record(
        &tx,
        app.clock.now(),
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

/// Resolves `dmk_…` to a principal bound to its tenant; records the use.
pub async fn authenticate_api_key(app: &App, key: &str) -> ApiResult<Principal> {
    let invalid = || ApiError::Unauthenticated("invalid API key".into());
    if let Some(principal) = app.key_cache.get(key) {
        return Ok(principal);
    }
    let prefix = auth::api_key_prefix(key).ok_or_else(invalid)?;
    let tx = app.store.begin_system().await?;
    let row = api_keys::find_by_prefix_system(&tx, prefix)
        .await?
        .ok_or_else(invalid)?;
    // Constant-time enough: both sides are fixed-length hex of a SHA-256.
    if row.revoked_at.is_some() || row.secret_hash != hash_secret(key) {
        return Err(invalid());
    }
    api_keys::touch(&tx, &row, app.clock.now()).await?;
    tx.commit().await?;
    let scopes = row
        .scopes
        .split(',')
        .filter_map(ApiKeyScope::parse)
        .collect();
    let principal = Principal {
        kind: PrincipalKind::ApiKey {
            id: parse_id("apiKey", &row.id)?,
            scopes,
        },
        scope: Scope::Tenant(parse_id("apiKey", &row.tenant_id)?),
    };
    app.key_cache.put(key, &row.id, principal.clone());
    Ok(principal)
}

//! Sessions: sign-in with a lockout per (account, client), rotating
//! refresh tokens, logout.

use chrono::Duration;
use dotmac_schema::{Scope, TenantId, UserId};

use super::{standing, Identity};
use crate::auth::{self, hash_secret, random_token, verify_password};
use crate::caller::RequestCtx;
use crate::error::{ApiError, ApiResult};
use crate::limiter::Rate;
use crate::service::parse_id;
use crate::store::audit_log::{self, AuditEntry};
use crate::store::token_rows::{self, RefreshRow};
use crate::store::user_rows::{self, UserRow};
use crate::store::Tx;
use crate::store::{login_attempt_rows, tenant_rows};

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
    identity: &Identity,
    ctx: &RequestCtx,
    email_in: &str,
    password: &str,
) -> ApiResult<Session> {
    let email_in = email_in.trim().to_lowercase();
    let client = ctx
        .client_ip
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    // Attempts on one account from one client: a stranger's guesses, from
    // elsewhere, neither use up nor block the owner's.
    let per_minute = identity.login_per_minute;
    identity
        .limiter
        .check(
            &format!("login:{email_in}:{client}"),
            Rate {
                per_minute,
                burst: per_minute,
            },
        )
        .await?;
    let now = identity.clock.now();
    // Step 1, short transaction: count the attempt before the password is
    // checked, so parallel guesses cannot all slip under the lockout.
    let tx = identity.store.begin_system().await?;
    let Some(user) = user_rows::find_by_email_system(&tx, &email_in).await? else {
        tx.commit().await?;
        // Every failure spends one password check: timing reveals nothing.
        auth::verify_against_nothing(password.to_owned()).await;
        return Err(bad_credentials());
    };
    let attempt = login_attempt_rows::reserve(&tx, &user.id, &client, now).await?;
    let refused = if attempt.locked_until.is_some_and(|u| u > now) {
        true
    } else if attempt.failures > identity.settings.lockout_failures {
        // Locked from this client only, each lock twice the one before.
        let locks = attempt.locks.saturating_add(1);
        let until = now + lockout(identity.settings.lockout_minutes, locks);
        login_attempt_rows::lock(&tx, &user.id, &client, until, locks).await?;
        audit_log::record(
            &tx,
            identity.clock.now(),
            None,
            ctx.request_id.as_deref(),
            AuditEntry {
                after: Some(format!("client {client} until {until}")),
                ..AuditEntry::about_user("auth.locked", &user)
            },
        )
        .await?;
        true
    } else {
        false
    };
    tx.commit().await?;
    // Step 2, outside any transaction: the deliberately slow hash check
    // must not hold a pooled connection. A locked client's attempt spends it
    // too (and the answer is the same), so a lock cannot be told apart.
    let ok = verify_password(password.to_owned(), user.password_hash.clone()).await?;
    if refused {
        return Err(bad_credentials());
    }
    // The right password of a closed tenant's user opens nothing (asked
    // before step 3's transaction: SQLite holds one writer at a time).
    if ok {
        standing::tenant_access(identity, &auth::user_principal(&user)?.scope).await?;
    }
    // Step 3: record the outcome.
    let tx = identity.store.begin_system().await?;
    if !ok {
        audit_log::record(
            &tx,
            identity.clock.now(),
            None,
            ctx.request_id.as_deref(),
            AuditEntry::about_user("auth.login_failed", &user),
        )
        .await?;
        tx.commit().await?;
        return Err(bad_credentials());
    }
    login_attempt_rows::clear(&tx, &user.id, &client).await?;
    let principal = auth::user_principal(&user)?;
    let session = open_session(identity, &tx, user, None).await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(&principal),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("auth.login", &session.user),
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

/// How long the `locks`-th lock of a client lasts: `first_minutes`,
/// doubling with each lock, at most a day.
fn lockout(first_minutes: i64, locks: i32) -> Duration {
    let doublings = u32::try_from(locks.saturating_sub(1)).unwrap_or(0).min(16);
    let minutes = first_minutes.saturating_mul(1_i64 << doublings);
    Duration::minutes(minutes.min(24 * 60))
}

/// Issues an access token and a refresh token (in `family`, or a new one).
pub(super) async fn open_session(
    identity: &Identity,
    tx: &Tx,
    user: UserRow,
    family: Option<String>,
) -> ApiResult<Session> {
    let refresh = random_token();
    let now = identity.clock.now();
    let family = family.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    token_rows::insert_refresh(
        tx,
        RefreshRow {
            id: uuid::Uuid::now_v7().to_string(),
            user_id: user.id.clone(),
            family_id: family.clone(),
            token_hash: hash_secret(&refresh),
            expires_at: now + Duration::days(identity.settings.refresh_token_days),
            revoked_at: None,
            created_at: now,
        },
    )
    .await?;
    Ok(Session {
        access_token: identity.keys.issue(&user, &family)?,
        refresh_token: refresh,
        expires_in: identity.keys.access_ttl.num_seconds(),
        user,
    })
}

/// Rotates a refresh token. Presenting one that was already rotated means it
/// leaked: the whole family is revoked.
pub async fn refresh(identity: &Identity, ctx: &RequestCtx, token: &str) -> ApiResult<Session> {
    let invalid = || ApiError::Unauthenticated("invalid or expired refresh token".into());
    let tx = identity.store.begin_system().await?;
    let row = token_rows::find_refresh(&tx, &hash_secret(token))
        .await?
        .ok_or_else(invalid)?;
    let now = identity.clock.now();
    // A token already rotated (or rotated by a concurrent request right now)
    // has leaked: end the whole family.
    let reused = row.revoked_at.is_some() || {
        row.expires_at > now && !token_rows::revoke_if_live(&tx, &row, now).await?
    };
    if reused {
        token_rows::revoke_family(&tx, &row.family_id, now).await?;
        audit_log::record(
            &tx,
            identity.clock.now(),
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
    let user = user_rows::get(&tx, &Scope::All, &user_id).await?;
    if let Some(tenant) = &user.tenant_id {
        let tenant: TenantId = parse_id("refreshToken", tenant)?;
        standing::check_open(&tenant_rows::get(&tx, &Scope::All, &tenant).await?)?;
    }
    let session = open_session(identity, &tx, user, Some(row.family_id.clone())).await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(&auth::user_principal(&session.user)?),
        ctx.request_id.as_deref(),
        AuditEntry::about_user("auth.refresh", &session.user),
    )
    .await?;
    tx.commit().await?;
    Ok(session)
}

/// Ends the refresh token's session: its family of refresh tokens and
/// every access token issued in it. Needs the caller signed in as its owner.
pub async fn logout(identity: &Identity, ctx: &RequestCtx, token: &str) -> ApiResult<bool> {
    let p = ctx.principal()?;
    let tx = identity.store.begin_system().await?;
    let Some(row) = token_rows::find_refresh(&tx, &hash_secret(token)).await? else {
        return Ok(false);
    };
    if Some(row.user_id.as_str()) != p.user_id().map(UserId::as_str) {
        return Ok(false);
    }
    token_rows::revoke_family(&tx, &row.family_id, identity.clock.now()).await?;
    audit_log::record(
        &tx,
        identity.clock.now(),
        Some(p),
        ctx.request_id.as_deref(),
        AuditEntry {
            action: "auth.logout",
            object_id: Some(row.user_id.clone()),
            tenant_id: super::scope_tenant(&p.scope),
            reseller_id: super::scope_reseller(&p.scope),
            ..Default::default()
        },
    )
    .await?;
    tx.commit().await?;
    identity.standing.forget_session(&row.family_id);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_lock_lasts_twice_the_one_before_up_to_a_day() {
        assert_eq!(lockout(30, 1), Duration::minutes(30));
        assert_eq!(lockout(30, 2), Duration::minutes(60));
        assert_eq!(lockout(30, 3), Duration::minutes(120));
        assert_eq!(lockout(30, 7), Duration::minutes(24 * 60));
        assert_eq!(lockout(30, i32::MAX), Duration::minutes(24 * 60));
        assert_eq!(lockout(i64::MAX, 2), Duration::minutes(24 * 60));
    }
}

//! Credentials: argon2id password hashes, short-lived JWT access tokens,
//! opaque random secrets (refresh tokens, invitations, API keys) stored as
//! SHA-256 hashes, and turning a bearer credential into a [`Principal`].

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use dotmac_schema::{
    Principal, PrincipalKind, ResellerId, Role, Scope, SharedClock, TenantId, UserId,
};
use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult, InternalError};
use crate::store::user_rows::UserRow;

pub const MIN_PASSWORD_LEN: usize = 12;
/// Every API key starts with this, so leaked keys are easy to scan for.
pub const API_KEY_PREFIX: &str = "dmk_";

/// Hashes a password with argon2id off the async runtime (it is slow on purpose).
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::Internal(InternalError::Hash(e.to_string())))
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

pub async fn verify_password(password: String, hash: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let parsed = PasswordHash::new(&hash)
            .map_err(|e| ApiError::Internal(InternalError::Hash(e.to_string())))?;
        Ok(Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok())
    })
    .await
    .map_err(|e| ApiError::internal(e.to_string()))?
}

/// Spends what checking a password against a stored hash spends, on no
/// account: the answer for a missing account then takes as long as for a
/// wrong password or a locked account, and timing reveals nothing.
pub async fn verify_against_nothing(password: String) {
    static NOTHING: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();
    let Ok(hash) = NOTHING
        .get_or_try_init(|| hash_password(random_token()))
        .await
    else {
        return;
    };
    let _ = verify_password(password, hash.clone()).await;
}

pub fn check_password_strength(field: &str, password: &str) -> ApiResult<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(ApiError::validation(
            field,
            format!("must be at least {MIN_PASSWORD_LEN} characters"),
        ));
    }
    Ok(())
}

/// A fresh unguessable token (256 bits, URL-safe).
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// What is stored in place of a secret.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Who issues access tokens, and for whom: a token of another issuer or
/// audience (another service sharing the secret by mistake) is refused.
pub const TOKEN_ISSUER: &str = "dotmac";
pub const TOKEN_AUDIENCE: &str = "dotmac-api";

/// Claims of an access token: who, in which scope, and the user's token
/// generation when it was issued (revoked once the generation moves on).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(rename = "gen")]
    pub generation: i32,
    /// The session (refresh-token family) it was issued in: signing out
    /// of it revokes the token.
    pub sid: String,
    pub role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reseller: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

/// Signs and checks access tokens.
#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    pub access_ttl: Duration,
    /// Issue and expiry times come from here, not the wall clock.
    clock: SharedClock,
}

/// Seconds a token is still accepted after its expiry (clock skew between
/// processes).
const LEEWAY_SECS: i64 = 5;

impl TokenKeys {
    pub fn new(secret: &[u8], access_ttl: Duration, clock: SharedClock) -> Self {
        TokenKeys {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            access_ttl,
            clock,
        }
    }

    /// An access token for `user` in `session` (its refresh-token family).
    pub fn issue(&self, user: &UserRow, session: &str) -> ApiResult<String> {
        let role = parse_role(&user.role)?;
        let now = self.clock.now();
        let claims = Claims {
            iss: TOKEN_ISSUER.to_owned(),
            aud: TOKEN_AUDIENCE.to_owned(),
            sub: user.id.clone(),
            generation: user.token_generation,
            sid: session.to_owned(),
            role,
            tenant: user.tenant_id.clone(),
            reseller: user.reseller_id.clone(),
            iat: now.timestamp(),
            exp: (now + self.access_ttl).timestamp(),
        };
        jsonwebtoken::encode(&Header::default(), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(InternalError::Token(e)))
    }

    /// What an access token says, once its signature, issuer, audience and
    /// expiry are good; any defect is UNAUTHENTICATED. Whether it was
    /// revoked since is the store's to say (`identity::standing`).
    pub fn verify(&self, token: &str) -> ApiResult<VerifiedToken> {
        let invalid = || ApiError::Unauthenticated("invalid or expired access token".into());
        // Expiry is checked against the injected clock below, not by the
        // library against the wall clock.
        let mut validation = Validation::default();
        validation.validate_exp = false;
        validation.set_issuer(&[TOKEN_ISSUER]);
        validation.set_audience(&[TOKEN_AUDIENCE]);
        validation.required_spec_claims = ["exp", "iss", "aud", "sub"].map(str::to_owned).into();
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| invalid())?;
        let expires_at = DateTime::from_timestamp(data.claims.exp, 0)
            .ok_or_else(|| ApiError::Unauthenticated("malformed access token".into()))?;
        if self.clock.now().timestamp() > data.claims.exp.saturating_add(LEEWAY_SECS) {
            return Err(invalid());
        }
        let generation = data.claims.generation;
        let session = data.claims.sid.clone();
        Ok(VerifiedToken {
            principal: principal_from_claims(data.claims)?,
            expires_at,
            generation,
            session,
        })
    }
}

/// A well-signed, unexpired access token.
#[derive(Debug, Clone)]
pub struct VerifiedToken {
    pub principal: Principal,
    pub expires_at: DateTime<Utc>,
    /// The user's token generation it was issued under.
    pub generation: i32,
    /// The session it was issued in.
    pub session: String,
}

fn parse_role(s: &str) -> ApiResult<Role> {
    Role::parse(s).ok_or_else(|| ApiError::internal(format!("unknown role {s:?} in store")))
}

fn principal_from_claims(c: Claims) -> ApiResult<Principal> {
    let bad = || ApiError::Unauthenticated("malformed access token".into());
    let id: UserId = c.sub.parse().map_err(|_| bad())?;
    let scope = scope_for(c.role, c.tenant.as_deref(), c.reseller.as_deref()).ok_or_else(bad)?;
    Ok(Principal {
        kind: PrincipalKind::User { id, role: c.role },
        scope,
    })
}

/// The scope a user of `role` bound to `tenant`/`reseller` acts in; `None`
/// when the binding does not fit the role.
pub fn scope_for(role: Role, tenant: Option<&str>, reseller: Option<&str>) -> Option<Scope> {
    use dotmac_schema::auth::ScopeKind;
    match role.scope_kind() {
        ScopeKind::Platform => Some(Scope::All),
        ScopeKind::Reseller => reseller?.parse::<ResellerId>().ok().map(Scope::Reseller),
        ScopeKind::Tenant => tenant?.parse::<TenantId>().ok().map(Scope::Tenant),
    }
}

pub fn user_principal(user: &UserRow) -> ApiResult<Principal> {
    let role = parse_role(&user.role)?;
    let id: UserId = user
        .id
        .parse()
        .map_err(|e| ApiError::internal(format!("{e}")))?;
    let scope = scope_for(role, user.tenant_id.as_deref(), user.reseller_id.as_deref())
        .ok_or_else(|| ApiError::internal("user's binding does not fit its role"))?;
    Ok(Principal {
        kind: PrincipalKind::User { id, role },
        scope,
    })
}

/// Splits `dmk_<prefix>_<secret>` into its public prefix (looked up) and the
/// whole (hashed and compared).
pub fn api_key_prefix(key: &str) -> Option<&str> {
    let rest = key.strip_prefix(API_KEY_PREFIX)?;
    let (prefix, secret) = rest.split_once('_')?;
    let well_formed =
        prefix.len() == 12 && prefix.bytes().all(|b| b.is_ascii_hexdigit()) && !secret.is_empty();
    // Lazily: slicing a short key would panic.
    well_formed.then(|| &key[..API_KEY_PREFIX.len() + 12])
}

/// A new API key: (full secret shown once, public prefix).
pub fn new_api_key() -> (String, String) {
    let mut id = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut id);
    let prefix = format!("{API_KEY_PREFIX}{}", hex::encode(id));
    (format!("{prefix}_{}", random_token()), prefix)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn api_keys_parse_back_to_their_prefix() {
        let (key, prefix) = new_api_key();
        assert_eq!(api_key_prefix(&key), Some(prefix.as_str()));
        assert_eq!(api_key_prefix("dmk_short_x"), None);
        assert_eq!(api_key_prefix("nope"), None);
        assert_eq!(api_key_prefix("dmk_zzzzzzzzzzzz_x"), None);
        assert_eq!(api_key_prefix("dmk_é"), None);
    }

    #[test]
    fn tokens_round_trip_and_reject_tampering() {
        let clock = dotmac_schema::ManualClock::new("2026-11-16T12:00:00Z".parse().unwrap());
        let keys = TokenKeys::new(&[7u8; 32], Duration::minutes(30), Arc::new(clock.clone()));
        let now = clock.now();
        let user = UserRow {
            id: UserId::new().to_string(),
            email: "a@example.com".into(),
            name: None,
            password_hash: String::new(),
            role: "tenant_admin".into(),
            tenant_id: Some(TenantId::new().to_string()),
            reseller_id: None,
            created_at: now,
            token_generation: 0,
        };
        let token = keys.issue(&user, "family-1").unwrap();
        let VerifiedToken {
            principal: p,
            expires_at,
            generation,
            session,
        } = keys.verify(&token).unwrap();
        assert_eq!(
            (generation, session.as_str()),
            (user.token_generation, "family-1")
        );
        assert_eq!(expires_at, now + Duration::minutes(30));
        assert_eq!(
            p.scope,
            Scope::Tenant(user.tenant_id.clone().unwrap().parse().unwrap())
        );
        let other = TokenKeys::new(&[8u8; 32], Duration::minutes(30), Arc::new(clock.clone()));
        assert!(other.verify(&token).is_err());
        // Expired by the injected clock, whatever the wall clock says.
        clock.advance(Duration::minutes(30) + Duration::seconds(LEEWAY_SECS));
        assert!(keys.verify(&token).is_ok(), "within the leeway");
        clock.advance(Duration::seconds(1));
        assert!(keys.verify(&token).is_err(), "expired");
    }

    #[test]
    fn tokens_of_another_issuer_or_audience_are_refused() {
        let clock = dotmac_schema::ManualClock::new("2026-11-16T12:00:00Z".parse().unwrap());
        let secret = [7u8; 32];
        let keys = TokenKeys::new(&secret, Duration::minutes(30), Arc::new(clock.clone()));
        let now = clock.now().timestamp();
        let claims = |iss: &str, aud: &str| Claims {
            iss: iss.to_owned(),
            aud: aud.to_owned(),
            sub: UserId::new().to_string(),
            generation: 0,
            sid: "family-1".to_owned(),
            role: Role::PlatformAdmin,
            tenant: None,
            reseller: None,
            iat: now,
            exp: now + 60,
        };
        let sign = |c: &Claims| {
            jsonwebtoken::encode(&Header::default(), c, &EncodingKey::from_secret(&secret)).unwrap()
        };
        assert!(keys
            .verify(&sign(&claims(TOKEN_ISSUER, TOKEN_AUDIENCE)))
            .is_ok());
        assert!(keys
            .verify(&sign(&claims("other", TOKEN_AUDIENCE)))
            .is_err());
        assert!(keys.verify(&sign(&claims(TOKEN_ISSUER, "other"))).is_err());
        // A token shaped like the old ones (no iss, aud or gen) is refused.
        let old = serde_json::json!({ "sub": UserId::new().to_string(), "role": "platform_admin", "iat": now, "exp": now + 60 });
        let old =
            jsonwebtoken::encode(&Header::default(), &old, &EncodingKey::from_secret(&secret))
                .unwrap();
        assert!(keys.verify(&old).is_err());
    }
}

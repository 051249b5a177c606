//! Plugin licensing: the catalog ([`catalog`]), tenants' licences with
//! their seats and signed licence files ([`licences`]). Licence files,
//! revocation lists and entitlement snapshots are signed with the platform's
//! key through the [`SigningKey`] port: OpenBao in production, the public
//! development key otherwise (which only `dev-key` builds of the verifier
//! trust, so it can never pass for a production licence).

pub mod catalog;
pub mod entitlements;
pub mod licences;

use std::sync::Arc;

use dotmac_licence::sign::Signer;
use dotmac_schema::SharedClock;

use crate::error::ApiResult;
use crate::outbox::Outbox;
use crate::store::Store;

/// Where the platform's licence signing key comes from.
#[async_trait::async_trait]
pub trait SigningKey: Send + Sync {
    async fn signer(&self) -> ApiResult<Arc<Signer>>;
    /// Which key this is, for the start-up banner.
    fn describe(&self) -> String;
}

/// The development key (its seed is public).
pub struct DevSigningKey(Arc<Signer>);

impl Default for DevSigningKey {
    fn default() -> Self {
        DevSigningKey(Arc::new(Signer::dev()))
    }
}

#[async_trait::async_trait]
impl SigningKey for DevSigningKey {
    async fn signer(&self) -> ApiResult<Arc<Signer>> {
        Ok(self.0.clone())
    }

    fn describe(&self) -> String {
        format!(
            "the development key {} (trusted only by dev builds of the verifier)",
            self.0.key_id()
        )
    }
}

/// Where the platform's key is kept in OpenBao/Vault.
pub const VAULT_KEY_NAME: &str = "licence-signing";

/// The platform's key in OpenBao/Vault (`<mount>/platform/licence-signing`:
/// `key_id` and a hex `seed`), read once and kept in memory.
pub struct VaultSigningKey {
    pub vault: Arc<dotmac_orchestrator::secrets::openbao::OpenBao>,
    pub cached: tokio::sync::OnceCell<Arc<Signer>>,
}

#[async_trait::async_trait]
impl SigningKey for VaultSigningKey {
    async fn signer(&self) -> ApiResult<Arc<Signer>> {
        self.cached
            .get_or_try_init(|| async {
                let missing = || {
                    crate::error::ApiError::Unavailable(format!(
                        "no licence signing key in Vault at platform/{VAULT_KEY_NAME}: make one with `dotmac licence keygen`"
                    ))
                };
                let secret = self
                    .vault
                    .platform_secret(VAULT_KEY_NAME)
                    .await
                    .map_err(|e| crate::error::ApiError::Unavailable(e.to_string()))?
                    .ok_or_else(missing)?;
                let key_id = secret.get("key_id").ok_or_else(missing)?.expose().to_owned();
                let seed = secret
                    .get("seed")
                    .and_then(|s| hex::decode(s.expose()).ok())
                    .and_then(|s| <[u8; 32]>::try_from(s).ok())
                    .ok_or_else(|| {
                        crate::error::ApiError::internal(
                            "the licence signing key in Vault is not 32 hex-encoded bytes",
                        )
                    })?;
                Signer::from_seed(&key_id, seed)
                    .map(Arc::new)
                    .map_err(|e| crate::error::ApiError::internal(e.to_string()))
            })
            .await
            .cloned()
    }

    fn describe(&self) -> String {
        format!("the platform's key in Vault (platform/{VAULT_KEY_NAME})")
    }
}

/// What licensing's use cases need.
#[derive(Clone)]
pub struct Licensing {
    pub store: Store,
    pub clock: SharedClock,
    pub outbox: Arc<Outbox>,
    pub signing: Arc<dyn SigningKey>,
    /// Activations per licence are rate-limited here.
    pub limiter: Arc<dyn crate::limiter::RateLimiter>,
}

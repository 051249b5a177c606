//! Per-tenant secrets: the port the reconcile asks, with its two
//! implementations — OpenBao/Vault in production ([`openbao`]) and an
//! encrypted file store in the data dir for `dotmac dev` ([`local`]).
//! Values are [`SecretValue`]s: they print as `[redacted]`, so no log line,
//! error or GraphQL field can carry one by accident.

pub mod local;
pub mod openbao;

use std::collections::BTreeMap;
use std::fmt;

use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;

use crate::Error;

/// A secret value: readable only through [`SecretValue::expose`].
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: String) -> SecretValue {
        SecretValue(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One version of a tenant's secrets, as delivered to its namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSecrets {
    /// The store's version (KV v2's, or the local store's): rises on rotation.
    pub version: u64,
    pub values: BTreeMap<String, SecretValue>,
}

/// Where a tenant's secrets live.
#[async_trait::async_trait]
pub trait SecretVault: Send + Sync {
    /// The tenant's secrets for `generation`: made on the first call, rotated
    /// (a new version, the old ones kept) when `generation` is above the one
    /// stored, returned as they are otherwise. Idempotent.
    async fn ensure(&self, tenant_id: &str, generation: u32) -> Result<TenantSecrets, Error>;

    /// An earlier version, while the store keeps it (`None` once gone).
    async fn version(&self, tenant_id: &str, version: u64) -> Result<Option<TenantSecrets>, Error>;

    /// Revokes everything of the tenant's: its credentials stop working and
    /// its secrets are deleted with all their versions. Idempotent.
    async fn revoke(&self, tenant_id: &str) -> Result<(), Error>;

    /// Which implementation this is, for the status line of `dotmac dev`.
    fn describe(&self) -> String;
}

/// Key under which the generation a version was made for is stored.
pub(crate) const GENERATION_KEY: &str = "_generation";

/// Fresh values of everything the framework needs. The instance's store
/// credentials (if any) are added by the store, not generated here.
pub(crate) fn generate() -> BTreeMap<String, SecretValue> {
    let mut rng = rand::thread_rng();
    let mut key = [0u8; 32];
    rng.fill_bytes(&mut key);
    let mut signing = [0u8; 32];
    rng.fill_bytes(&mut signing);
    BTreeMap::from([
        (
            "DATABASE_PASSWORD".to_owned(),
            SecretValue(Alphanumeric.sample_string(&mut rng, 32)),
        ),
        (
            "JWT_SIGNING_KEY".to_owned(),
            SecretValue(hex::encode(signing)),
        ),
        (
            "DATA_ENCRYPTION_KEY".to_owned(),
            SecretValue(base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                key,
            )),
        ),
    ])
}

/// The tenant id, checked: it names a store path, so it must be a tenant id
/// and nothing else (no `..`, no slashes).
pub(crate) fn checked(tenant_id: &str) -> Result<dotmac_schema::TenantId, Error> {
    tenant_id.parse().map_err(|e| Error::Invalid {
        field: "tenantId",
        reason: format!("{e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_print() {
        let v = generate();
        let shown = format!("{v:?}");
        for secret in v.values() {
            assert!(!shown.contains(secret.expose()));
        }
        assert!(shown.contains("[redacted]"));
        assert_eq!(v["DATABASE_PASSWORD"].expose().len(), 32);
    }

    #[test]
    fn generated_values_differ_each_time() {
        assert_ne!(generate(), generate());
    }

    #[test]
    fn only_tenant_ids_name_a_path() {
        assert!(checked("ten_../../sys").is_err());
        assert!(checked("ten_0123456789abcdef0123456789abcdef").is_ok());
    }
}

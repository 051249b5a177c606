//! Verified API keys, remembered briefly so that the usage intake does not
//! run a Postgres transaction (lookup, last-use update, commit) on every
//! request. An entry lives `TTL`: a key revoked through this process is
//! forgotten at once; through another process, within `TTL`. Last use is
//! then recorded at most once per `TTL` per key and process.

use std::time::Duration;

use dotmac_schema::Principal;
use sha2::{Digest, Sha256};

use super::ttl_map::TtlMap;

/// How long a verified key is trusted without asking the database again.
pub const TTL: Duration = Duration::from_secs(5);

/// Verified keys by the SHA-256 of their secret: the principal and the
/// key's id (to forget it when revoked).
pub struct KeyCache(TtlMap<[u8; 32], (Principal, String)>);

impl Default for KeyCache {
    fn default() -> Self {
        KeyCache(TtlMap::new(TTL))
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl KeyCache {
    /// The principal of `key` if it was verified within `TTL`.
    pub fn get(&self, key: &str) -> Option<Principal> {
        self.0.get(&digest(key)).map(|(p, _)| p)
    }

    /// Remembers a key the database just verified.
    pub fn put(&self, key: &str, key_id: &str, principal: Principal) {
        self.0.put(digest(key), (principal, key_id.to_owned()));
    }

    /// Forgets the key with id `key_id` (it was revoked).
    pub fn forget(&self, key_id: &str) {
        self.0.forget_where(|(_, id)| id == key_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dotmac_schema::{ApiKeyId, ApiKeyScope, PrincipalKind, Scope, TenantId};

    #[test]
    fn remembers_then_forgets_on_revoke() {
        let cache = KeyCache::default();
        let p = Principal {
            kind: PrincipalKind::ApiKey {
                id: ApiKeyId::new(),
                scopes: vec![ApiKeyScope::UsageWrite],
            },
            scope: Scope::Tenant(TenantId::new()),
        };
        assert!(cache.get("dmk_a").is_none());
        cache.put("dmk_a", "key1", p.clone());
        assert!(cache.get("dmk_a").is_some());
        assert!(cache.get("dmk_b").is_none());
        cache.forget("key1");
        assert!(cache.get("dmk_a").is_none());
    }
}

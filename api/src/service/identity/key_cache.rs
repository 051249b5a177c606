//! Verified API keys, remembered briefly so that the usage intake does not
//! run a Postgres transaction (lookup, last-use update, commit) on every
//! request. An entry lives `TTL`: a key revoked through this process is
//! forgotten at once; through another process, within `TTL`. Last use is
//! then recorded at most once per `TTL` per key and process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dotmac_schema::Principal;
use sha2::{Digest, Sha256};

/// How long a verified key is trusted without asking the database again.
pub const TTL: Duration = Duration::from_secs(5);
/// Entries beyond this many trigger a sweep of expired ones.
const SWEEP_AT: usize = 10_000;

struct Entry {
    principal: Principal,
    key_id: String,
    verified_at: Instant,
}

#[derive(Default)]
pub struct KeyCache {
    entries: Mutex<HashMap<[u8; 32], Entry>>,
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl KeyCache {
    /// The principal of `key` if it was verified within `TTL`.
    pub fn get(&self, key: &str) -> Option<Principal> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(&digest(key))
            .filter(|e| e.verified_at.elapsed() < TTL)
            .map(|e| e.principal.clone())
    }

    /// Remembers a key the database just verified.
    pub fn put(&self, key: &str, key_id: &str, principal: Principal) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= SWEEP_AT {
            entries.retain(|_, e| e.verified_at.elapsed() < TTL);
        }
        entries.insert(
            digest(key),
            Entry {
                principal,
                key_id: key_id.to_owned(),
                verified_at: Instant::now(),
            },
        );
    }

    /// Forgets the key with id `key_id` (it was revoked).
    pub fn forget(&self, key_id: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| e.key_id != key_id);
        }
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

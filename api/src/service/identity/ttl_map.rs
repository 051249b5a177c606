//! A map whose entries are trusted for a fixed time: what identity's caches
//! (verified API keys, tenant states, sessions) remember between store
//! reads. Entries past the time are not returned, and are swept once the
//! map grows large.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries beyond this many trigger a sweep of expired ones.
const SWEEP_AT: usize = 10_000;

pub struct TtlMap<K, V> {
    ttl: Duration,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> TtlMap<K, V> {
    pub fn new(ttl: Duration) -> Self {
        TtlMap {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value remembered for `key` within the time, if any.
    pub fn get<Q>(&self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, v)| v.clone())
    }

    /// Remembers `value` for `key` from now.
    pub fn put(&self, key: K, value: V) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= SWEEP_AT {
            let ttl = self.ttl;
            entries.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        entries.insert(key, (Instant::now(), value));
    }

    /// Forgets `key`.
    pub fn remove<Q>(&self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Forgets every entry whose value `gone` picks.
    pub fn forget_where(&self, gone: impl Fn(&V) -> bool) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (_, v)| !gone(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_within_the_time_until_forgotten() {
        let map: TtlMap<String, u32> = TtlMap::new(Duration::from_secs(60));
        assert_eq!(map.get("a"), None);
        map.put("a".into(), 1);
        map.put("b".into(), 2);
        assert_eq!(map.get("a"), Some(1));
        map.remove("a");
        assert_eq!(map.get("a"), None);
        map.forget_where(|v| *v == 2);
        assert_eq!(map.get("b"), None);
        let expired: TtlMap<String, u32> = TtlMap::new(Duration::ZERO);
        expired.put("a".into(), 1);
        assert_eq!(expired.get("a"), None);
    }
}

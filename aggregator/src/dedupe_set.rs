//! The aggregator's memory of counted events: every dedupe key of one
//! partition whose event is durably counted, with the event's time so keys
//! older than the dedupe horizon can be dropped.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use dotmac_ingest::dedupe::{DedupeKey, KeyHasher};

/// The committed dedupe state of one Kafka partition: every key whose event
/// is durably counted, with its event time (unix seconds) so keys older than
/// the horizon can be dropped. Keys enter only after their batch's write
/// succeeded (never claimed before the write).
#[derive(Default)]
pub struct DedupeSet {
    keys: HashMap<DedupeKey, i64, BuildHasherDefault<KeyHasher>>,
}

impl DedupeSet {
    pub fn contains(&self, key: &DedupeKey) -> bool {
        self.keys.contains_key(key)
    }

    pub fn insert(&mut self, key: DedupeKey, event_time_secs: i64) {
        self.keys.insert(key, event_time_secs);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Drops keys of events older than `horizon_start_secs`; returns how many.
    pub fn prune_before(&mut self, horizon_start_secs: i64) -> usize {
        let before = self.keys.len();
        self.keys.retain(|_, t| *t >= horizon_start_secs);
        before - self.keys.len()
    }

    /// Bytes held by the table (entries plus one control byte each).
    pub fn approx_bytes(&self) -> usize {
        self.keys.capacity() * (std::mem::size_of::<(DedupeKey, i64)>() + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_set_remembers_and_forgets_by_horizon() {
        let mut set = DedupeSet::default();
        let (a, b) = (DedupeKey::new("t", "s", "a"), DedupeKey::new("t", "s", "b"));
        set.insert(a, 100);
        set.insert(b, 200);
        assert!(set.contains(&a) && set.contains(&b));
        assert_eq!(set.prune_before(150), 1);
        assert!(!set.contains(&a) && set.contains(&b));
        assert!(set.approx_bytes() >= 25);
    }
}

//! The dedupe key: `(tenant, source, id)` counts once. Kept as
//! 16 bytes of SHA-256 over length-prefixed fields, so the dedupe state costs
//! a fixed 16 bytes per event id whatever the ids' lengths, and no two
//! distinct triples can be made to collide by moving characters between
//! fields (collisions are then only SHA-256's: about 2^-64 at 2^32 keys).

use std::hash::Hasher;

use sha2::{Digest, Sha256};

/// Identity of one usage event for deduplication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DedupeKey(pub [u8; 16]);

impl DedupeKey {
    pub fn new(tenant: &str, source: &str, id: &str) -> DedupeKey {
        let fields = [tenant, source, id];
        let total: usize = fields.iter().map(|f| 8 + f.len()).sum();
        // The common case hashes one stack buffer in one call (the
        // incremental hasher's bookkeeping was a tenth of the fold); both
        // paths hash the same bytes.
        let mut buf = [0u8; 384];
        let digest = if total <= buf.len() {
            let mut at = 0;
            for field in fields {
                buf[at..at + 8].copy_from_slice(&(field.len() as u64).to_be_bytes());
                buf[at + 8..at + 8 + field.len()].copy_from_slice(field.as_bytes());
                at += 8 + field.len();
            }
            Sha256::digest(&buf[..total])
        } else {
            let mut h = Sha256::new();
            for field in fields {
                h.update((field.len() as u64).to_be_bytes());
                h.update(field.as_bytes());
            }
            h.finalize()
        };
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        DedupeKey(key)
    }

    /// The key as 32 lowercase hex digits (its stored form).
    pub fn to_hex(&self) -> String {
        let mut out = [0u8; 32];
        // 16 bytes always fit 32 digits.
        let _ = hex::encode_to_slice(self.0, &mut out);
        String::from_utf8(out.to_vec()).unwrap_or_default()
    }
}

/// The keys are already uniform hash output, so hashing them again is
/// wasted work: a map of keys (the aggregator's dedupe set) takes their
/// first eight bytes as the hash.
#[derive(Default)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 16]` hashes as its length, then its bytes; keep the bytes.
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
    fn write_usize(&mut self, _len: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn equal_triples_equal_keys_and_shifted_boundaries_differ(
            a in "[a-c]{0,6}", b in "[a-c]{0,6}", c in "[a-c]{0,6}", d in "[a-c]{0,6}"
        ) {
            prop_assert_eq!(DedupeKey::new(&a, &b, &c), DedupeKey::new(&a, &b, &c));
            let key = DedupeKey::new(&a, &b, &c);
            prop_assert_eq!(key.to_hex(), hex::encode(key.0));
            // Past the stack buffer, the incremental path hashes the same bytes.
            let long = c.repeat(80);
            let mut h = Sha256::new();
            for f in [a.as_str(), b.as_str(), long.as_str()] {
                h.update((f.len() as u64).to_be_bytes());
                h.update(f.as_bytes());
            }
            let expected: [u8; 32] = h.finalize().into();
            prop_assert_eq!(&DedupeKey::new(&a, &b, &long).0[..], &expected[..16]);
            // The same characters split differently are different events.
            let (x, y) = (format!("{a}{b}"), format!("{c}{d}"));
            if (a.as_str(), b.as_str()) != (x.as_str(), "") {
                prop_assert_ne!(DedupeKey::new(&x, "", &y), DedupeKey::new(&a, &b, &y));
            }
        }
    }

    #[test]
    fn the_tenant_is_part_of_the_identity() {
        assert_ne!(
            DedupeKey::new("ten_a", "s", "1"),
            DedupeKey::new("ten_b", "s", "1")
        );
        assert_ne!(
            DedupeKey::new("t", "s1", "1"),
            DedupeKey::new("t", "s", "11")
        );
    }
}

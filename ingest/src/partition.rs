//! Which partition of the events topic owns a record key: Kafka's default
//! partitioner for keyed records, `(murmur2(key) & 0x7fffffff) % partitions`,
//! the one the Java client, kafka-python and librdkafka's `murmur2_random`
//! use. Dedupe state lives per partition, so every record of a key must be
//! folded by its owning partition whatever partitioner its producer used:
//! the platform's own producers use this one, and the aggregator moves a
//! record found elsewhere to its owner before folding it.

/// MurmurHash2 (32-bit) with Kafka's seed, as Kafka's `Utils.murmur2`.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for c in chunks.by_ref() {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        if tail.len() >= 3 {
            h ^= u32::from(tail[2]) << 16;
        }
        if tail.len() >= 2 {
            h ^= u32::from(tail[1]) << 8;
        }
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition that owns `key` among `partitions` (at least 1).
pub fn owning_partition(key: &[u8], partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % partitions.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values Kafka's own tests give for its `murmur2`.
    #[test]
    fn murmur2_matches_kafka() {
        for (input, expected) in [
            ("21", -973_932_308),
            ("foobar", -790_332_482),
            ("a-little-bit-long-string", -985_981_536),
            ("a-little-bit-longer-string", -1_486_304_829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            ("abc", 479_470_107),
        ] {
            assert_eq!(murmur2(input.as_bytes()), expected, "{input}");
        }
    }

    #[test]
    fn every_key_has_one_owner_in_range() {
        for n in 1..8 {
            for key in ["", "a", "tenant-1", "01JD3Z"] {
                let p = owning_partition(key.as_bytes(), n);
                assert!((0..n).contains(&p));
                assert_eq!(p, owning_partition(key.as_bytes(), n));
            }
        }
    }
}

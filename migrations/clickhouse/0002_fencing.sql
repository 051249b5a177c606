-- Fencing a zombie aggregator (#13.6). A partition's new owner draws an
-- epoch (the offset of a record it produces to the epochs topic: strictly
-- increasing in the order claims are made), reads the partition's last
-- committed offset L, records its claim (partition, epoch, L + 1), then
-- reads every claim of the partition: each claim of a lower epoch gets a
-- fence at L + 1, and a claim of a higher epoch fences its own. A batch of
-- (partition, epoch) counts only below its fence, so a former owner that
-- commits a batch after losing the partition (paused, partitioned away)
-- commits rows nobody counts. Batches written before this migration have
-- epoch 0 and are fenced like any other.

ALTER TABLE usage_batches ADD COLUMN epoch UInt64 DEFAULT 0;

CREATE TABLE IF NOT EXISTS usage_claims (
    partition Int32,
    epoch UInt64,
    from_offset Int64,
    claimed_at_us Int64
) ENGINE = MergeTree ORDER BY (partition, epoch);

CREATE TABLE IF NOT EXISTS usage_fences (
    partition Int32,
    epoch UInt64,
    fenced_from Int64,
    fenced_at_us Int64
) ENGINE = MergeTree ORDER BY (partition, epoch);

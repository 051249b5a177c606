-- Compaction (#13.7). A closed 30-day bucket of rollup windows (no event
-- in it can be accepted any more: all are older than the dedupe horizon)
-- has its committed parts merged by the merge law into one row per
-- (tenant, meter, window, group) in usage_rollup_compacted under a fresh
-- compaction id, then one row in usage_compactions commits them. Readers
-- take a compacted bucket from its latest compaction only and ignore its
-- parts, so the bucket's parts can then be dropped: a read over a year
-- costs the same whatever number of flushes wrote it.

-- The same columns, in the same order, partitioning and sort as the parts
-- (readers take both with one UNION ALL of SELECT *); write_id holds the
-- compaction id.
CREATE TABLE IF NOT EXISTS usage_rollup_compacted AS usage_rollup_parts;

CREATE TABLE IF NOT EXISTS usage_compactions (
    bucket Int64,
    compaction_id String,
    parts UInt64,
    rows UInt64,
    compacted_at_us Int64
) ENGINE = MergeTree ORDER BY bucket;

-- Compaction (#13.7). A closed 30-day bucket of rollup windows (no event
-- in it can be accepted any more: all are older than the dedupe horizon)
-- has its committed parts merged by the merge law into one row per
-- (tenant, meter, window, group) in usage_rollup_compacted under a fresh
-- compaction id, then one row in usage_compactions commits them. Readers
-- take a compacted bucket from its latest compaction only and ignore its
-- parts, so the bucket's parts can then be dropped: a read over a year
-- costs the same whatever number of flushes wrote it.

CREATE TABLE IF NOT EXISTS usage_rollup_compacted (
    tenant String,
    meter String,
    window_start Int64,
    group_key String,
    partition Int32,
    write_id String,
    aggregation String,
    value String,
    count UInt64,
    uniques Array(String),
    latest_time_us Int64,
    latest_id String
) ENGINE = MergeTree
PARTITION BY intDiv(window_start, 2592000)
ORDER BY (tenant, meter, window_start, group_key);

CREATE TABLE IF NOT EXISTS usage_compactions (
    bucket Int64,
    compaction_id String,
    parts UInt64,
    rows UInt64,
    compacted_at_us Int64
) ENGINE = MergeTree ORDER BY bucket;

-- Usage pipeline tables. Written for current ClickHouse and
-- for Debian's 18.16: plain MergeTree, Int64 times (unix seconds for
-- windows, microseconds for event times), no TTL, no DateTime64, no Map.
--
-- Exactly-once: every aggregator flush writes its raw events and rollup
-- parts tagged with a fresh write_id, then ONE row per partition into
-- usage_batches naming that write_id and the Kafka offset range it covers.
-- Readers count only rows whose write_id has a batch row, so a flush that
-- died half-way is invisible, and its replay (a new write_id) counts once.
-- usage_batches has no PARTITION BY, so one INSERT is one part: atomic.

CREATE TABLE IF NOT EXISTS usage_batches (
    partition Int32,
    first_offset Int64,
    last_offset Int64,
    write_id String,
    written_at_us Int64,
    events UInt32,
    accepted UInt32,
    duplicates UInt32,
    dead_lettered UInt32
) ENGINE = MergeTree ORDER BY (partition, first_offset);

CREATE TABLE IF NOT EXISTS usage_raw (
    tenant String,
    event_time_us Int64,
    partition Int32,
    offset Int64,
    write_id String,
    dedupe_key String,
    event_id String,
    source String,
    event_type String,
    subject String,
    payload String,
    received_at_us Int64
) ENGINE = MergeTree
PARTITION BY intDiv(event_time_us, 2592000000000)
ORDER BY (tenant, event_time_us, partition, offset);

CREATE TABLE IF NOT EXISTS usage_rollup_parts (
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

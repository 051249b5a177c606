//! The usage aggregator (`dotmac aggregate`): a Kafka consumer-group member
//! that folds usage events into windowed rollups and writes them to
//! ClickHouse exactly once, with a dead-letter topic for what it cannot
//! count; the catalog of tenants and meters it folds by; and the reads of
//! committed usage that billing and dashboards use.
//!
//! The intake contract it consumes (event batches, the dedupe key, topics,
//! the producer) is `dotmac-ingest`'s.

pub mod catalog;
pub mod clickhouse;
pub mod compaction;
pub mod consumer;
pub mod dedupe_set;
pub mod fold;
pub mod retention;
pub mod rows;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod totals;

pub use consumer::{
    run, AggregatorConfig, AggregatorError, AggregatorStats, FlushHook, FlushSummary,
};
pub use dedupe_set::DedupeSet;

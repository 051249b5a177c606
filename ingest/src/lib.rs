//! The usage pipeline (DESIGN.md §6): intake parsing, the dedupe key, the
//! producer library, the aggregator's fold and loop, and the ClickHouse
//! usage store.

pub mod aggregator;
pub mod batch;
pub mod catalog;
pub mod clickhouse;
pub mod dedupe;
pub mod fold;
pub mod kafka;
pub mod rows;
pub mod store;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod totals;

pub use batch::{parse_body, parse_body_raw, BatchError, MAX_BATCH_EVENTS};
pub use dedupe::{DedupeKey, DedupeSet};

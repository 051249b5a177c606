//! Usage event intake (DESIGN.md §6): turning an HTTP body into per-event
//! verdicts, and the dedupe key that makes `(tenant, source, id)` count once.
//! The Kafka producer and the HTTP route build on these in the next steps.

pub mod batch;
pub mod dedupe;

pub use batch::{parse_body, BatchError, MAX_BATCH_EVENTS};
pub use dedupe::DedupeKey;

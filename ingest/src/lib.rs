//! The usage intake contract that ISP deployments and the
//! platform share: CloudEvents batch parsing and per-event verdicts, the
//! dedupe key, the topics and Kafka client settings, and the producer an ISP
//! deployment can embed. The aggregator that consumes what it produces is
//! `dotmac-aggregator`.

pub mod batch;
pub mod dedupe;
pub mod kafka;
pub mod partition;

pub use batch::{parse_body, parse_body_raw, BatchError, MAX_BATCH_EVENTS};
pub use dedupe::DedupeKey;

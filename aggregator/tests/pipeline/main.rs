//! The aggregator against the real broker (tansu) and real ClickHouse,
//! started by `deploy/local/pipeline-services.sh`: exactness for every
//! aggregation, bad input to the dead-letter topic, a third-party producer,
//! and the close's ClickHouse totals read. (The HTTP intake, billing from
//! the pipeline and the chaos test of `dotmac aggregate` are the API's.)

mod activation;
mod bad_input;
mod compaction;
mod exactness;
mod fencing;
mod harness;
mod rebalance;
mod retention;
mod sasl;
mod third_party;
mod totals;

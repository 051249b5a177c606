//! Usage pipeline tests against the real broker (tansu) and real ClickHouse
//! (DESIGN.md §9), started by `deploy/local/pipeline-services.sh`.

#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;

mod bad_input;
mod billing;
mod chaos;
mod exactness;
mod harness;
mod intake;
mod third_party;
mod totals;

//! The usage pipeline through the `dotmac` API against the real broker
//! (tansu) and real ClickHouse, started by `deploy/local/pipeline-services.sh`:
//! the HTTP intake, billing from committed usage, and the chaos test of
//! `dotmac aggregate`. The aggregator's own tests are in `aggregator/tests`.

#[allow(dead_code)]
#[path = "../it/support.rs"]
mod support;

mod billing;
mod chaos;
mod every_path;
mod harness;
mod intake;

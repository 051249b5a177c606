#!/usr/bin/env bash
# Issue #3 pipeline benchmarks: end to end vs a raw rdkafka consumer, latency,
# and RSS through a ClickHouse outage (see benches/src/bench_pipeline.rs).
#   deploy/local/bench-pipeline.sh [--events N --rate R --outage-secs S]
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/services.sh
deploy/local/pipeline-services.sh
cargo build --release --locked -p dotmac-benches --bin bench-pipeline
exec "${CARGO_TARGET_DIR:-target}/release/bench-pipeline" "$@"

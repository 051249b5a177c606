#!/usr/bin/env bash
# Issue #3 HTTP intake benchmark: POST /v1/events vs a raw rdkafka producer
# of the same events, side by side (see benches/src/bench_intake.rs).
#   deploy/local/bench-intake.sh [--batch 100..1000 --concurrency C --seconds S]
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/services.sh
deploy/local/pipeline-services.sh
cargo build --release --locked -p dotmac-api -p dotmac-benches --bin dotmac --bin bench-intake
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-intake" --dotmac "$target/release/dotmac" "$@"

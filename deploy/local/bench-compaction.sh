#!/usr/bin/env bash
# Issue #13.7 compaction benchmark: a year of rollup parts written by 10,
# 100 and 1,000 flushes, read before and after compaction, side by side.
#   deploy/local/bench-compaction.sh [--flushes 10,100,1000 --tenants 5 --rounds 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/pipeline-services.sh >/dev/null
cargo build --release --locked -p dotmac-benches --bin bench-compaction
exec "${CARGO_TARGET_DIR:-target}/release/bench-compaction" "$@"

#!/usr/bin/env bash
# Issue #3 fold benchmark: decode + fold events/s on one core, side by side
# with serde_json parsing the same bytes; and dedupe memory per million ids.
#   deploy/local/bench-fold.sh [--events N --rounds R --batch B]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p dotmac-benches --bin bench-fold
exec taskset -c 0 "${CARGO_TARGET_DIR:-target}/release/bench-fold" "$@"

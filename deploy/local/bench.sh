#!/usr/bin/env bash
# Runs the end-to-end benchmarks with their baselines side by side:
#   deploy/local/bench.sh            # tenants(first: 50) vs raw SQL, and dev start-up
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/services.sh
cargo build --release --locked -p dotmac-api -p dotmac-benches
exec "${CARGO_TARGET_DIR:-target}/release/bench-tenants" --dotmac "${CARGO_TARGET_DIR:-target}/release/dotmac" "$@"

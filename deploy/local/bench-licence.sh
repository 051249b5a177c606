#!/usr/bin/env bash
# Issue #15 verifier benchmark: feature checks/s against a bare HashMap
# lookup, licence verifications/s against raw ed25519, one core each.
#   deploy/local/bench-licence.sh [--checks N --verifications N --rounds R]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --locked -p dotmac-benches --bin bench-licence
exec taskset -c 0 "${CARGO_TARGET_DIR:-target}/release/bench-licence" "$@"

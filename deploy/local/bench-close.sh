#!/usr/bin/env bash
# Issue #4 period-close benchmark: dotmac bill close for 10,000 tenants x 5
# meters from ClickHouse rollups, vs the raw ClickHouse GROUP BY over the
# same rollups (see benches/src/bench_close.rs).
#   deploy/local/bench-close.sh [--tenants N --days D --rounds R]
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/services.sh
deploy/local/pipeline-services.sh
cargo build --release --locked -p dotmac-api -p dotmac-benches --bin dotmac --bin bench-close
target="${CARGO_TARGET_DIR:-target}"
exec "$target/release/bench-close" --dotmac "$target/release/dotmac" "$@"

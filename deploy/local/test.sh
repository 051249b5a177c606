#!/usr/bin/env bash
# The whole test suite, from a fresh machine: services, formatting, lints,
# every unit, property and integration test (real Postgres and Redis), and
# the committed GraphQL SDL checked for drift (a test in api/tests/it), and
# the usage pipeline against ClickHouse and the tansu broker, and the
# orchestrator against a real Kubernetes API server and OpenBao.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/services.sh
deploy/local/pipeline-services.sh
deploy/local/kubernetes.sh
deploy/local/openbao.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

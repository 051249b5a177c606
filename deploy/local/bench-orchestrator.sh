#!/usr/bin/env bash
# Issue #14 orchestrator benchmark: N tenants onboarded by the controller
# (in-process, on a real Kubernetes 1.20 API server with the harness kubelet)
# vs a raw server-side-apply loop doing the same work, requests per tenant,
# and RSS with 1,000+ instances (see benches/src/bench_orchestrator.rs).
# DOTMAC_KUBECONFIG, DOTMAC_VAULT_ADDR and DOTMAC_VAULT_TOKEN as for the tests.
#   deploy/local/bench-orchestrator.sh [--tenants 500 --idle-instances 1000 --concurrency 16]
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/local/kubernetes.sh
deploy/local/openbao.sh
cargo build --release --locked -p dotmac-benches --bin bench-orchestrator
exec "${CARGO_TARGET_DIR:-target}/release/bench-orchestrator" "$@"

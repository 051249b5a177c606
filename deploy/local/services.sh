#!/usr/bin/env bash
# Installs (if missing) and starts (if stopped) the services the tests and
# benchmarks use: PostgreSQL on 127.0.0.1:5432 with trust auth for local TCP,
# and Redis on 127.0.0.1:6379. Idempotent; needs root for installs.
set -euo pipefail

log() { echo "[services] $*"; }
apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- Build prerequisites ----------------------------------------------------
# librdkafka is built with OpenSSL (SASL/SCRAM and TLS towards the brokers).
if ! pkg-config --exists openssl 2>/dev/null; then
  log "installing libssl-dev and pkg-config (librdkafka's TLS and SCRAM)"
  apt_install libssl-dev pkg-config
fi

# --- PostgreSQL -------------------------------------------------------------
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log "installing postgresql"
  apt_install postgresql postgresql-client
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  hba="/etc/postgresql/$version/main/pg_hba.conf"
  # Tests connect over TCP without a password (trust), as on the project's machines.
  if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
    log "enabling trust auth for 127.0.0.1 in $hba"
    sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
  fi
  log "starting postgresql $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 -q || { log "postgresql did not come up"; exit 1; }

# --- Redis ------------------------------------------------------------------
if ! command -v redis-server >/dev/null 2>&1; then
  log "installing redis"
  apt_install redis-server redis-tools
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  log "starting redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
  for _ in $(seq 1 30); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; sleep 1; done
fi
redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null || { log "redis did not come up"; exit 1; }

# --- The app role (row-level security applies to it) ------------------------
psql -h 127.0.0.1 -U postgres -d postgres -qtAc \
  "DO \$\$ BEGIN CREATE ROLE dotmac_app LOGIN NOSUPERUSER NOBYPASSRLS; EXCEPTION WHEN duplicate_object THEN NULL; END \$\$" >/dev/null

# Leftover test databases from earlier runs (tests make one each).
for db in $(psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT datname FROM pg_database WHERE datname LIKE 'dotmac_t_%' OR datname LIKE 'dotmac_bench_%'"); do
  psql -h 127.0.0.1 -U postgres -d postgres -qtAc "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null || true
done
log "postgresql and redis are up"

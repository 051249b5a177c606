#!/usr/bin/env bash
# Installs (if missing) and starts (if stopped) the services of the usage
# pipeline (issue #3): Debian's ClickHouse (HTTP on 127.0.0.1:8123) and the
# tansu Kafka-protocol broker on 127.0.0.1:9092. Idempotent; needs root.
#
# The broker is built from crates.io once (10-15 min cold) into a cache
# outside the clone (DOTMAC_CACHE, default /var/cache/dotmac); a cold machine
# builds it, a warm one reuses it. Storage: memory by default; the chaos test
# starts its own broker on the sqlite engine (libsql feature), whose log
# survives restarts. (tansu 0.6's postgres engine needs a schema that is not
# shipped in the crate, so it cannot start on an empty database.)
set -euo pipefail

log() { echo "[pipeline-services] $*"; }
cache="${DOTMAC_CACHE:-/var/cache/dotmac}"
broker_root="$cache/broker"
broker="$broker_root/bin/tansu"
mkdir -p "$cache"

# --- ClickHouse (Debian ships 18.16; the SQL is written to run on it) -------
if ! command -v clickhouse-server >/dev/null 2>&1; then
  log "installing clickhouse"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
fi
if ! curl -sf http://127.0.0.1:8123/ping >/dev/null 2>&1; then
  log "starting clickhouse"
  mkdir -p /var/lib/clickhouse /var/log/clickhouse-server
  chown -R clickhouse:clickhouse /var/lib/clickhouse /var/log/clickhouse-server
  start-stop-daemon --start --oknodo --background --chuid clickhouse \
    --exec /usr/sbin/clickhouse-server -- --config-file=/etc/clickhouse-server/config.xml
  for _ in $(seq 1 60); do curl -sf http://127.0.0.1:8123/ping >/dev/null && break; sleep 1; done
fi
curl -sf http://127.0.0.1:8123/ping >/dev/null || { log "clickhouse did not come up"; exit 1; }
# Databases left by earlier test runs (each test makes its own dotmac_t_*).
for db in $(curl -sf http://127.0.0.1:8123/ --data-binary "SELECT name FROM system.databases WHERE startsWith(name, 'dotmac_t_') OR startsWith(name, 'bench_')"); do
  curl -sf http://127.0.0.1:8123/ --data-binary "DROP DATABASE IF EXISTS $db" >/dev/null || true
done

# --- kafka-python: the third-party client of the interoperability test ------
if ! python3 -c "import kafka" >/dev/null 2>&1; then
  log "installing kafka-python"
  python3 -m pip install -q "kafka-python==3.0.12"
fi

# --- tansu broker -------------------------------------------------------------
features="dynostore,libsql"
if [ ! -x "$broker" ] || [ "$(cat "$broker_root/features" 2>/dev/null)" != "$features" ]; then
  log "building the tansu broker ($features) into $broker_root (10-15 min cold)"
  cargo install tansu --version 0.6.0 --locked --force --features "$features" \
    --root "$broker_root" --target-dir "$cache/broker-target"
  echo "$features" >"$broker_root/features"
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null; then
  storage="memory://tansu/"
  log "starting the broker ($storage)"
  mkdir -p /var/log/dotmac
  nohup "$broker" broker --listener-url tcp://127.0.0.1:9092 \
    --advertised-listener-url tcp://127.0.0.1:9092 --storage-engine "$storage" \
    >/var/log/dotmac/broker.log 2>&1 &
  for _ in $(seq 1 60); do (exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null && break; sleep 1; done
fi
(exec 3<>/dev/tcp/127.0.0.1/9092) 2>/dev/null || { log "the broker did not come up; see /var/log/dotmac/broker.log"; exit 1; }
log "clickhouse and the broker are up"

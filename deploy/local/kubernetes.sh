#!/usr/bin/env bash
# Installs (if missing) and starts (if stopped) a real Kubernetes API server for the
# orchestrator's tests and benchmarks: etcd from Debian, and kube-apiserver plus
# kube-controller-manager built from Debian bookworm's `kubernetes` source package
# (1.20.2, vendored) with Debian's Go. No registry ships the binaries, so the first
# run builds them (about 4 minutes on 2 cores, measured) into a cache outside any clone
# ($DOTMAC_KUBE_CACHE, default /var/cache/dotmac/kubernetes); later runs reuse it.
#
# It runs no kubelet and no pods: tests play the kubelet themselves (a Node object,
# pods bound and marked Ready), so Deployments become available through the real
# controllers.
#
# After it: https://127.0.0.1:6443, CA at $DOTMAC_KUBE_STATE/ca.crt, a bearer token
# for a cluster admin in $DOTMAC_KUBE_STATE/admin.token, and a kubeconfig at
# $DOTMAC_KUBE_STATE/kubeconfig. Idempotent; needs root for installs.
set -euo pipefail

log() { echo "[kubernetes] $*"; }
cache=${DOTMAC_KUBE_CACHE:-/var/cache/dotmac/kubernetes}
state=${DOTMAC_KUBE_STATE:-/var/lib/dotmac/kubernetes}
port=${DOTMAC_KUBE_PORT:-6443}
etcd_port=${DOTMAC_ETCD_PORT:-2479}
mkdir -p "$cache" "$state"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    apt-get -o DPkg::Lock::Timeout=900 update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -qq "$@" >/dev/null
}

# --- etcd and openssl ----------------------------------------------------------
command -v etcd >/dev/null 2>&1 || { log "installing etcd-server"; apt_install etcd-server; }
command -v openssl >/dev/null 2>&1 || { log "installing openssl"; apt_install openssl; }

# --- kube-apiserver and kube-controller-manager, built once from source --------
bin="$cache/bin"
# What the binaries were built from; a different stamp rebuilds them.
stamp="1.20.2 reflect2-1.0.2"
if [ ! -x "$bin/kube-apiserver" ] || [ ! -x "$bin/kube-controller-manager" ] \
   || [ "$(cat "$bin/.stamp" 2>/dev/null)" != "$stamp" ]; then
  log "building kube-apiserver and kube-controller-manager 1.20.2 from Debian's source (about 4 min cold on 2 cores)"
  command -v go >/dev/null 2>&1 || { log "installing golang-go"; apt_install golang-go; }
  command -v dpkg-source >/dev/null 2>&1 || apt_install dpkg-dev
  command -v rsync >/dev/null 2>&1 || apt_install rsync
  # The vendored reflect2 1.0.1 dereferences nil under Go >= 1.18 (the API
  # server panics on its first decode of some types); Debian's 1.0.2 is fixed.
  [ -d /usr/share/gocode/src/github.com/modern-go/reflect2 ] || apt_install golang-github-modern-go-reflect2-dev
  if [ ! -f /etc/apt/sources.list.d/dotmac-src.sources ]; then
    cat >/etc/apt/sources.list.d/dotmac-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    apt_updated=0
  fi
  src="$cache/src"
  if [ ! -d "$src" ] || ! ls -d "$src"/kubernetes-*/ >/dev/null 2>&1; then
    [ "$apt_updated" = 0 ] && { apt-get -o DPkg::Lock::Timeout=900 update -qq; apt_updated=1; }
    rm -rf "$src" && mkdir -p "$src"
    (cd "$src" && apt-get source -qq kubernetes >/dev/null)
  fi
  tree=$(ls -d "$src"/kubernetes-*/ | head -n 1)
  rm -rf "$tree/vendor/github.com/modern-go/reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 "$tree/vendor/github.com/modern-go/reflect2"
  # Not a git checkout: the version comes from these instead of `git describe`.
  (cd "$tree" && env KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_TREE_STATE=clean KUBE_GIT_COMMIT=debian \
      GOFLAGS=-mod=vendor GO111MODULE=on GOPATH="$cache/gopath" GOCACHE="$cache/gocache" \
      make WHAT="cmd/kube-apiserver cmd/kube-controller-manager")
  mkdir -p "$bin"
  cp "$tree/_output/bin/kube-apiserver" "$tree/_output/bin/kube-controller-manager" "$bin/"
  echo "$stamp" >"$bin/.stamp"
  # A server started from the old binaries is restarted below.
  pkill -f "$bin/kube-apiserver" 2>/dev/null || true
  pkill -f "$bin/kube-controller-manager" 2>/dev/null || true
  sleep 1
  log "built into $bin"
fi

# --- Certificates: a CA and a separate leaf (rustls refuses a CA used as leaf) ---
if [ ! -f "$state/apiserver.crt" ]; then
  log "making a CA, the API server's certificate and the service-account key in $state"
  (
    cd "$state"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=dotmac-test-ca" -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >admin.token
    echo "$(cat admin.token),admin,admin,system:masters" >tokens.csv
  )
fi
token=$(cat "$state/admin.token")
cat >"$state/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: dotmac-test
  cluster:
    server: https://127.0.0.1:$port
    certificate-authority: $state/ca.crt
users:
- name: admin
  user:
    token: $token
contexts:
- name: dotmac-test
  context: {cluster: dotmac-test, user: admin}
current-context: dotmac-test
EOF

healthy() {
  curl -sf --cacert "$state/ca.crt" -H "Authorization: Bearer $token" \
    "https://127.0.0.1:$port/readyz" >/dev/null 2>&1
}

# --- etcd ----------------------------------------------------------------------
if ! curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1; then
  log "starting etcd on 127.0.0.1:$etcd_port"
  mkdir -p "$state/etcd"
  nohup etcd --data-dir "$state/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
    --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((etcd_port + 1))" \
    --initial-cluster "default=http://127.0.0.1:$((etcd_port + 1))" \
    --quota-backend-bytes 4294967296 >"$state/etcd.log" 2>&1 &
  for _ in $(seq 1 60); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break; sleep 0.5; done
fi

# --- kube-apiserver ------------------------------------------------------------
if ! healthy; then
  log "starting kube-apiserver on 127.0.0.1:$port"
  nohup "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$port" \
    --tls-cert-file "$state/apiserver.crt" --tls-private-key-file "$state/apiserver.key" \
    --client-ca-file "$state/ca.crt" --token-auth-file "$state/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-key-file "$state/sa.pub" \
    --service-account-signing-key-file "$state/sa.key" \
    --service-account-issuer https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --enable-admission-plugins NamespaceLifecycle,LimitRanger,ResourceQuota,ServiceAccount \
    --max-requests-inflight 1000 --max-mutating-requests-inflight 500 \
    --insecure-port 0 >"$state/apiserver.log" 2>&1 &
  echo $! >"$state/apiserver.pid"
  for _ in $(seq 1 120); do healthy && break; sleep 0.5; done
fi
healthy || { log "kube-apiserver did not come up; see $state/apiserver.log"; tail -n 20 "$state/apiserver.log"; exit 1; }

# --- kube-controller-manager (namespace deletion, Deployment status, quotas) ----
if ! pgrep -f "$bin/kube-controller-manager" >/dev/null 2>&1; then
  log "starting kube-controller-manager"
  nohup "$bin/kube-controller-manager" --kubeconfig "$state/kubeconfig" \
    --service-account-private-key-file "$state/sa.key" --root-ca-file "$state/ca.crt" \
    --use-service-account-credentials=false --leader-elect=false \
    --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner' \
    --kube-api-qps 400 --kube-api-burst 800 --concurrent-namespace-syncs 50 \
    --bind-address 127.0.0.1 --secure-port 10257 >"$state/controller-manager.log" 2>&1 &
  echo $! >"$state/controller-manager.pid"
fi
log "kubernetes API server is up at https://127.0.0.1:$port (kubeconfig $state/kubeconfig)"

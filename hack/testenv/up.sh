#!/usr/bin/env bash
# up.sh DIR — starts etcd and kube-apiserver on 127.0.0.1 in the background, with data,
# logs, pid files, keys and certificates under DIR, writes an admin kubeconfig to
# DIR/kubeconfig and shell-sourceable variables to DIR/env, waits for /readyz, returns.
# Idempotent: if DIR already holds a running, ready control plane it says so and exits 0.
#
# Env: KUBE_VERSION, ETCD_VERSION, CHAOSLAB_CACHE     which binaries (see install.sh)
#      CHAOSLAB_APISERVER_PORT, CHAOSLAB_ETCD_PORT, CHAOSLAB_ETCD_PEER_PORT
#                                                    fixed ports (default: free ones)
#      CHAOSLAB_READY_TIMEOUT                        seconds to wait for ready (default 90)
# Writes DIR/env with: KUBECONFIG APISERVER_URL APISERVER_PORT APISERVER_CA_FILE TOKEN
#      ETCD_URL ETCD_PORT ETCD_PEER_PORT KUBE_VERSION ETCD_VERSION CONTROL_PLANE_DIR
# All processes' output goes to DIR/*.log, so a caller that captures this script's
# stdout/stderr through pipes is not kept waiting by the background processes.
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$here/common.sh"

log() { echo "up.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] && [ -n "$1" ] || { echo "usage: $0 DIR" >&2; exit 2; }
mkdir -p "$1"
dir="$(cd "$1" && pwd -P)"
timeout="${CHAOSLAB_READY_TIMEOUT:-90}"

for b in "$KUBE_APISERVER_BIN" "$ETCD_BIN"; do
  [ -x "$b" ] || die "$b is missing: run hack/testenv/install.sh (KUBE_VERSION=$KUBE_VERSION ETCD_VERSION=$ETCD_VERSION)"
done
for t in openssl curl; do
  command -v "$t" >/dev/null || die "$t is not on PATH"
done

# A pid counts only if it is alive and its command line names this DIR (no pid reuse).
pid_ours() { # $1 pid file
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/"
}

readyz_ok() { # uses the values from DIR/env
  curl -fsS --max-time 3 --cacert "$APISERVER_CA_FILE" -H "Authorization: Bearer $TOKEN" \
    "$APISERVER_URL/readyz" >/dev/null 2>&1
}

# ---- already running? ----------------------------------------------------------------
if [ -f "$dir/env" ] && pid_ours "$dir/etcd.pid" && pid_ours "$dir/apiserver.pid"; then
  # shellcheck disable=SC1091
  . "$dir/env"
  if readyz_ok; then
    log "control plane in $dir is already running and ready: apiserver $APISERVER_URL, etcd $ETCD_URL"
    log "use: export KUBECONFIG=$dir/kubeconfig   (or: . $dir/env)"
    exit 0
  fi
fi
if [ -f "$dir/etcd.pid" ] || [ -f "$dir/apiserver.pid" ]; then
  log "$dir holds a stopped or unhealthy control plane: cleaning it up first"
  bash "$here/down.sh" "$dir"
  mkdir -p "$dir"
fi

# ---- ports -----------------------------------------------------------------------------
port_free() { # $1 port: nothing listens on it and it can be bound on 127.0.0.1
  if command -v python3 >/dev/null; then
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
  else
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
  fi
}
picked=" "
port=""
use_port() { # $1 name of the env var with a fixed port, $2 what it is for; sets $port
  local v="${!1:-}" i
  if [ -n "$v" ]; then
    [[ "$v" =~ ^[0-9]+$ ]] || die "$1=$v is not a port number"
    port_free "$v" || die "port $v ($2, from $1) on 127.0.0.1 is already in use"
    picked="$picked$v "
    port="$v"
    return 0
  fi
  for i in $(seq 1 200); do
    if command -v python3 >/dev/null; then
      v="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
    else
      v=$((20000 + RANDOM % 12000))
    fi
    case "$picked" in *" $v "*) continue ;; esac
    if port_free "$v"; then picked="$picked$v "; port="$v"; return 0; fi
  done
  die "could not find a free port on 127.0.0.1 for $2"
}
use_port CHAOSLAB_ETCD_PORT "etcd client"; etcd_port="$port"
use_port CHAOSLAB_ETCD_PEER_PORT "etcd peer"; etcd_peer_port="$port"
use_port CHAOSLAB_APISERVER_PORT "kube-apiserver"; api_port="$port"

# ---- keys, certificates, token -----------------------------------------------------------
pki="$dir/pki"
mkdir -p "$pki" "$dir/apiserver-certs"
if [ ! -f "$pki/ca.crt" ]; then
  log "generating CA, serving certificate, service-account key pair and admin token in $pki"
  (
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=chaoslab-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr \
      -subj "/CN=kube-apiserver" 2>/dev/null
    cat >apiserver.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.0.0.1
EOF
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    # Admin client certificate too (group system:masters), for clients that prefer it.
    openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr \
      -subj "/O=system:masters/CN=admin" 2>/dev/null
    printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out admin.crt -days 3650 -extfile admin.ext 2>/dev/null
    openssl genrsa -out sa.key 2048 2>/dev/null
    openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext
    openssl rand -hex 24 >token
    printf '%s,admin,admin-uid,"system:masters"\n' "$(cat token)" >token.csv
    chmod 600 ./*.key token token.csv
  )
fi
token="$(cat "$pki/token")"

api_url="https://127.0.0.1:$api_port"
etcd_url="http://127.0.0.1:$etcd_port"

b64() { base64 -w0 <"$1"; }
cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: chaoslab-test
  cluster:
    server: $api_url
    certificate-authority-data: $(b64 "$pki/ca.crt")
users:
- name: admin
  user:
    token: $token
contexts:
- name: chaoslab-test
  context:
    cluster: chaoslab-test
    user: admin
    namespace: default
current-context: chaoslab-test
EOF
chmod 600 "$dir/kubeconfig"

{
  printf 'export CONTROL_PLANE_DIR=%q\n' "$dir"
  printf 'export KUBECONFIG=%q\n' "$dir/kubeconfig"
  printf 'export APISERVER_URL=%q\n' "$api_url"
  printf 'export APISERVER_PORT=%q\n' "$api_port"
  printf 'export APISERVER_CA_FILE=%q\n' "$pki/ca.crt"
  printf 'export APISERVER_ADMIN_CERT_FILE=%q\n' "$pki/admin.crt"
  printf 'export APISERVER_ADMIN_KEY_FILE=%q\n' "$pki/admin.key"
  printf 'export TOKEN=%q\n' "$token"
  printf 'export ETCD_URL=%q\n' "$etcd_url"
  printf 'export ETCD_PORT=%q\n' "$etcd_port"
  printf 'export ETCD_PEER_PORT=%q\n' "$etcd_peer_port"
  printf 'export KUBE_VERSION=%q\n' "$KUBE_VERSION"
  printf 'export ETCD_VERSION=%q\n' "$ETCD_VERSION"
} >"$dir/env"
APISERVER_URL="$api_url" APISERVER_CA_FILE="$pki/ca.crt" TOKEN="$token"

# ---- start ---------------------------------------------------------------------------------
started=()
fail() { # $1 message, $2 log file to show
  log "error: $1"
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    log "last lines of $2:"
    tail -n 40 "$2" >&2
  fi
  log "stopping what was started (logs stay in $dir)"
  local pid
  for pid in "${started[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 1
  for pid in "${started[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -f "$dir/etcd.pid" "$dir/apiserver.pid"
  exit 1
}

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }

# setsid: the processes outlive this script and the caller's process group.
log "starting etcd v$ETCD_VERSION on $etcd_url (peer port $etcd_peer_port)"
setsid "$ETCD_BIN" \
  --name=default \
  --data-dir="$dir/etcd-data" \
  --listen-client-urls="$etcd_url" \
  --advertise-client-urls="$etcd_url" \
  --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="default=http://127.0.0.1:$etcd_peer_port" \
  --unsafe-no-fsync=true \
  --log-level=warn \
  </dev/null >"$dir/etcd.log" 2>&1 &
etcd_pid=$!
started+=("$etcd_pid")
echo "$etcd_pid" >"$dir/etcd.pid"

deadline=$(( $(date +%s) + timeout ))
until curl -fsS --max-time 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"'; do
  kill -0 "$etcd_pid" 2>/dev/null || fail "etcd exited (port $etcd_port or $etcd_peer_port taken?)" "$dir/etcd.log"
  [ "$(date +%s)" -lt "$deadline" ] || fail "etcd not healthy after ${timeout}s" "$dir/etcd.log"
  sleep 0.2
done
log "etcd healthy after $(elapsed)s"

log "starting kube-apiserver v$KUBE_VERSION on $api_url"
setsid "$KUBE_APISERVER_BIN" \
  --etcd-servers="$etcd_url" \
  --cert-dir="$dir/apiserver-certs" \
  --tls-cert-file="$pki/apiserver.crt" \
  --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --token-auth-file="$pki/token.csv" \
  --secure-port="$api_port" \
  --bind-address=127.0.0.1 \
  --advertise-address=127.0.0.1 \
  --service-cluster-ip-range=10.0.0.0/24 \
  --allow-privileged=true \
  --authorization-mode=RBAC \
  --disable-admission-plugins=ServiceAccount \
  --service-account-issuer="$api_url" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  </dev/null >"$dir/apiserver.log" 2>&1 &
api_pid=$!
started+=("$api_pid")
echo "$api_pid" >"$dir/apiserver.pid"

until readyz_ok; do
  if ! kill -0 "$api_pid" 2>/dev/null; then
    if grep -q 'address already in use' "$dir/apiserver.log"; then
      fail "kube-apiserver exited: port $api_port on 127.0.0.1 is already in use" "$dir/apiserver.log"
    fi
    fail "kube-apiserver exited" "$dir/apiserver.log"
  fi
  [ "$(date +%s)" -lt "$deadline" ] || {
    curl -sS --max-time 3 --cacert "$APISERVER_CA_FILE" -H "Authorization: Bearer $TOKEN" \
      "$APISERVER_URL/readyz?verbose" 2>&1 | grep -v '\] ok$' >&2 || true
    fail "kube-apiserver not ready after ${timeout}s" "$dir/apiserver.log"
  }
  sleep 0.25
done
log "kube-apiserver ready after $(elapsed)s: $api_url (etcd $etcd_url)"
log "use: export KUBECONFIG=$dir/kubeconfig   (or: . $dir/env)"

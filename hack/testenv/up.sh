#!/usr/bin/env bash
# up.sh [--all] DIR — starts etcd and kube-apiserver on 127.0.0.1 in the background, with
# data, logs, pid files, keys and certificates under DIR, writes an admin kubeconfig to
# DIR/kubeconfig and shell-sourceable variables to DIR/env, waits for /readyz, returns.
# Idempotent: if DIR already holds a running, ready control plane it says so and exits 0.
# --all (needs install.sh --all): also kube-controller-manager, kube-scheduler and kwok,
#   plus one fake Node "kwok-node-0" that kwok keeps Ready, so Deployments and StatefulSets
#   get scheduled and their pods reach Running/Ready without a kubelet. kwok gives pods
#   loopback IPs (127.0.1.0/24) and the node 127.0.0.1: nothing listens there unless a
#   test puts a server on such an address itself.
# --node (needs root and install.sh --node): a real node instead (node.sh): the apiserver on
#   198.18.0.1 (the node's address on the bridge chaoslab0) with Services from 198.19.0.0/16,
#   kube-controller-manager, kube-scheduler, containerd + runc, a kubelet registered as the
#   Ready node chaoslab-node, CNI, kube-proxy and CoreDNS; the upstream images the chart needs,
#   built here (node-images.sh), imported into containerd. Adds NODE_IP to DIR/env.
#
# Env: KUBE_VERSION, ETCD_VERSION, CHAOSLAB_CACHE     which binaries (see install.sh)
#      CHAOSLAB_APISERVER_PORT, CHAOSLAB_ETCD_PORT, CHAOSLAB_ETCD_PEER_PORT
#                                                    fixed ports (default: free ones)
#      CHAOSLAB_READY_TIMEOUT                        seconds to wait for ready (default 90)
# Writes DIR/env with: KUBECONFIG APISERVER_URL APISERVER_PORT APISERVER_CA_FILE TOKEN
#      APISERVER_ADMIN_CERT_FILE APISERVER_ADMIN_KEY_FILE ETCD_URL ETCD_PORT ETCD_PEER_PORT
#      KUBE_VERSION ETCD_VERSION CONTROL_PLANE_DIR
# All processes' output goes to DIR/*.log, so a caller that captures this script's
# stdout/stderr through pipes is not kept waiting by the background processes.
set -euo pipefail
shopt -s inherit_errexit

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$here/common.sh"

log() { echo "up.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

all=0
node=0
args=()
for a in "$@"; do
  case "$a" in
    --all) all=1 ;;
    --node) node=1 ;;
    -*) echo "up.sh: unknown option $a" >&2; echo "usage: $0 [--all|--node] DIR" >&2; exit 2 ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -eq 1 ] && [ -n "${args[0]}" ] || { echo "usage: $0 [--all|--node] DIR" >&2; exit 2; }
[ "$all$node" != 11 ] || { echo "up.sh: --all (kwok's fake node) and --node (a real one) exclude each other" >&2; exit 2; }
mkdir -p "${args[0]}"
dir="$(cd "${args[0]}" && pwd -P)"
timeout="${CHAOSLAB_READY_TIMEOUT:-90}"

for b in "$KUBE_APISERVER_BIN" "$ETCD_BIN"; do
  [ -x "$b" ] || die "$b is missing: run hack/testenv/install.sh (KUBE_VERSION=$KUBE_VERSION ETCD_VERSION=$ETCD_VERSION)"
done
if [ "$all" = 1 ]; then
  for b in "$KUBE_CONTROLLER_MANAGER_BIN" "$KUBE_SCHEDULER_BIN" "$KWOK_BIN" "$KWOK_STAGES"; do
    [ -f "$b" ] || die "$b is missing: run hack/testenv/install.sh --all (KUBE_VERSION=$KUBE_VERSION KWOK_VERSION=$KWOK_VERSION)"
  done
fi
for t in openssl curl setsid; do
  command -v "$t" >/dev/null || die "$t is not on PATH"
done

# Two up.sh on the same DIR at once: the second waits, then finds it running.
if command -v flock >/dev/null; then
  exec 9>"$dir/.up.lock"
  flock 9
fi

# shellcheck source=procs.sh
. "$here/procs.sh"

readyz_ok() { # uses APISERVER_URL, APISERVER_CA_FILE, TOKEN
  curl -fsS --max-time 3 --cacert "$APISERVER_CA_FILE" -H "Authorization: Bearer $TOKEN" \
    "$APISERVER_URL/readyz" >/dev/null 2>&1
}

pki="$dir/pki"

# ---- already running? ----------------------------------------------------------------
already=0
if [ -f "$dir/env" ] && pid_ours "$dir/etcd.pid" && pid_ours "$dir/apiserver.pid"; then
  # shellcheck disable=SC1091
  . "$dir/env"
  if readyz_ok; then
    log "control plane in $dir is already running and ready: apiserver $APISERVER_URL, etcd $ETCD_URL"
    already=1
  fi
fi
if [ "$already" = 0 ] && { [ -f "$dir/etcd.pid" ] || [ -f "$dir/apiserver.pid" ]; }; then
  log "$dir holds a stopped or unhealthy control plane: cleaning it up first"
  bash "$here/down.sh" --keep-lock "$dir"
  mkdir -p "$dir"
fi

# The apiserver's address and flags: pods reach it through the kubernetes Service, so on a
# real node it listens on the node's address and pods get service-account tokens.
api_ip=127.0.0.1
api_mode_flags=(--service-cluster-ip-range=10.0.0.0/24 --disable-admission-plugins=ServiceAccount)
if [ "$node" = 1 ]; then
  bash "$here/node.sh" network "$dir"
  api_ip="$NODE_IP"
  api_mode_flags=(--service-cluster-ip-range="$SERVICE_CIDR" --kubelet-preferred-address-types=InternalIP)
fi

if [ "$already" = 0 ]; then
# ---- ports -----------------------------------------------------------------------------
port_free() { # $1 port: nothing listens on it and it can be bound on 127.0.0.1
  if command -v python3 >/dev/null; then
    python3 -c '
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)' "$1"
  else
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 1; fi
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

# ---- keys, certificates, token -----------------------------------------------------------
mkdir -p "$pki" "$dir/apiserver-certs"
if [ ! -f "$pki/token.csv" ]; then
  log "generating CA, serving and admin certificates, service-account key pair (ECDSA P-256) and admin token in $pki"
  (
    cd "$pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout ca.key -out ca.crt -days 3650 -subj "/CN=chaoslab-test-ca" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    # Serving certificate: an end-entity certificate (rustls/webpki refuse a CA certificate
    # as a server's), with 127.0.0.1 as an IP SAN, and for --node the node address and the
    # kubernetes Service's address, which pods connect to.
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
      'extendedKeyUsage=serverAuth' \
      "subjectAltName=IP:127.0.0.1,IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      >apiserver.ext
    openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out apiserver.crt -days 3650 -extfile apiserver.ext 2>/dev/null
    # Admin client certificate too (group system:masters), for clients that prefer it.
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
      -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=admin" 2>/dev/null
    printf '%s\n' 'basicConstraints=critical,CA:FALSE' 'keyUsage=critical,digitalSignature' \
      'extendedKeyUsage=clientAuth' >admin.ext
    openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
      -out admin.crt -days 3650 -extfile admin.ext 2>/dev/null
    # Service-account token signing key pair (ES256).
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out sa.key 2>/dev/null
    openssl pkey -in sa.key -pubout -out sa.pub 2>/dev/null
    rm -f ./*.csr ./*.ext
    openssl rand -hex 24 >token
    printf '%s,admin,admin-uid,"system:masters"\n' "$(cat token)" >token.csv.tmp
    chmod 600 ./*.key token token.csv.tmp
    mv token.csv.tmp token.csv
  )
fi
token="$(cat "$pki/token")"

b64() { base64 -w0 <"$1"; }
write_client_files() { # DIR/kubeconfig and DIR/env for the current ports
  api_url="https://$api_ip:$api_port"
  etcd_url="http://127.0.0.1:$etcd_port"
  cat >"$dir/kubeconfig" <<KUBECONFIG_END
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
KUBECONFIG_END
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
    [ "$node" = 0 ] || printf 'export NODE_IP=%q\n' "$api_ip"
  } >"$dir/env"
  APISERVER_URL="$api_url" APISERVER_CA_FILE="$pki/ca.crt" TOKEN="$token"
}

# ---- start ---------------------------------------------------------------------------------
is_running() { # $1 pid: alive and not a zombie
  [ -e "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}
started=()
stop_started() {
  local pid i alive
  for pid in "${started[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for ((i = 0; i < 100; i++)); do
    alive=0
    for pid in "${started[@]}"; do if is_running "$pid"; then alive=1; fi; done
    [ "$alive" = 0 ] && break
    sleep 0.1
  done
  for pid in "${started[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  started=()
  rm -f "$dir/etcd.pid" "$dir/apiserver.pid"
}
fail() { # $1 message, $2 log file to show
  log "error: $1"
  if [ -n "${2:-}" ] && [ -f "$2" ]; then
    log "last lines of $2:"
    tail -n 40 "$2" >&2
  fi
  log "stopping what was started (logs stay in $dir)"
  stop_started
  exit 1
}
# A port picked here can be taken by someone else before our process binds it (another
# up.sh running in parallel, an outgoing connection): then start again on new ports.
port_race() { # $1 log file; true if the process died of a taken port that we picked
  grep -q 'address already in use' "$1" 2>/dev/null || return 1
  [ -z "${CHAOSLAB_ETCD_PORT:-}${CHAOSLAB_ETCD_PEER_PORT:-}${CHAOSLAB_APISERVER_PORT:-}" ]
}

t0=$(date +%s.%N)
elapsed() { awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}'; }
deadline=$(( $(date +%s) + timeout ))

attempt=0
while :; do
  attempt=$((attempt + 1))
  retry=0
  picked=" "
  use_port CHAOSLAB_ETCD_PORT "etcd client"; etcd_port="$port"
  use_port CHAOSLAB_ETCD_PEER_PORT "etcd peer"; etcd_peer_port="$port"
  use_port CHAOSLAB_APISERVER_PORT "kube-apiserver"; api_port="$port"
  write_client_files
  rm -rf "$dir/etcd-data"

  # setsid: the processes outlive this script and the caller's process group; all their
  # output goes to files, so they hold none of the caller's pipes open.
  log "starting etcd v$ETCD_VERSION on $etcd_url (peer port $etcd_peer_port)"
  setsid "$ETCD_BIN" \
    --name=chaoslab \
    --data-dir="$dir/etcd-data" \
    --listen-client-urls="$etcd_url" \
    --advertise-client-urls="$etcd_url" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer_port" \
    --initial-cluster="chaoslab=http://127.0.0.1:$etcd_peer_port" \
    --unsafe-no-fsync=true \
    --log-level=warn \
    </dev/null >"$dir/etcd.log" 2>&1 9>&- &
  etcd_pid=$!
  started+=("$etcd_pid")
  echo "$etcd_pid" >"$dir/etcd.pid"

  until curl -fsS --max-time 2 "$etcd_url/health" 2>/dev/null | grep -q '"health":"true"'; do
    if ! is_running "$etcd_pid"; then
      if port_race "$dir/etcd.log" && [ "$attempt" -lt 3 ]; then retry=1; break; fi
      fail "etcd exited (is port $etcd_port or $etcd_peer_port on 127.0.0.1 taken?)" "$dir/etcd.log"
    fi
    [ "$(date +%s)" -lt "$deadline" ] || fail "etcd not healthy after ${timeout}s" "$dir/etcd.log"
    sleep 0.2
  done
  if [ "$retry" = 1 ]; then
    log "etcd lost a race for its port, retrying on other ports"
    stop_started
    continue
  fi
  log "etcd healthy after $(elapsed)s"

  # Every request at Metadata level: tests read who did what (e.g. which verbs an RBAC role needs).
  printf '%s\n' 'apiVersion: audit.k8s.io/v1' 'kind: Policy' 'rules:' '- level: Metadata' >"$dir/audit-policy.yaml"
  log "starting kube-apiserver v$KUBE_VERSION on $api_url"
  setsid "$KUBE_APISERVER_BIN" \
    --etcd-servers="$etcd_url" \
    --cert-dir="$dir/apiserver-certs" \
    --tls-cert-file="$pki/apiserver.crt" \
    --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --token-auth-file="$pki/token.csv" \
    --secure-port="$api_port" \
    --bind-address="$api_ip" \
    --advertise-address="$api_ip" \
    "${api_mode_flags[@]}" \
    --allow-privileged=true \
    --authorization-mode=RBAC \
    --service-account-issuer="$api_url" \
    --service-account-key-file="$pki/sa.pub" \
    --service-account-signing-key-file="$pki/sa.key" \
    --audit-policy-file="$dir/audit-policy.yaml" \
    --audit-log-path="$dir/audit.log" \
    --audit-log-format=json \
    </dev/null >"$dir/apiserver.log" 2>&1 9>&- &
  api_pid=$!
  started+=("$api_pid")
  echo "$api_pid" >"$dir/apiserver.pid"

  until readyz_ok; do
    if ! is_running "$api_pid"; then
      if port_race "$dir/apiserver.log" && [ "$attempt" -lt 3 ]; then retry=1; break; fi
      if grep -q 'address already in use' "$dir/apiserver.log"; then
        fail "kube-apiserver exited: port $api_port on 127.0.0.1 is already in use" "$dir/apiserver.log"
      fi
      fail "kube-apiserver exited" "$dir/apiserver.log"
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "readyz checks not ok yet:"
      curl -sS --max-time 3 --cacert "$APISERVER_CA_FILE" -H "Authorization: Bearer $TOKEN" \
        "$APISERVER_URL/readyz?verbose" 2>&1 | grep -v '\] ok$' >&2 || true
      fail "kube-apiserver not ready after ${timeout}s" "$dir/apiserver.log"
    fi
    sleep 0.25
  done
  if [ "$retry" = 1 ]; then
    log "kube-apiserver lost a race for its port, retrying on other ports"
    stop_started
    continue
  fi
  break
done
log "kube-apiserver ready after $(elapsed)s: $api_url (etcd $etcd_url)"
fi # already running

# ---- --all: controller-manager, scheduler, kwok -------------------------------------------
api() { # $1 method, $2 path, [$3 JSON body]; prints the body, fails on HTTP >= 400 except 409
  local code out
  out="$(mktemp)"
  code="$(curl -sS --max-time 5 --cacert "$APISERVER_CA_FILE" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -X "$1" ${3:+--data "$3"} -o "$out" -w '%{http_code}' \
    "$APISERVER_URL$2")" || { rm -f "$out"; return 1; }
  cat "$out"; rm -f "$out"
  [ "$code" -lt 400 ] || [ "$code" = 409 ]
}
if [ "$all" = 1 ]; then
  # Not in started[]: a failure here leaves etcd and the apiserver up (down.sh stops all).
  start_bg kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
    --kubeconfig="$dir/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
    --use-service-account-credentials=true --cluster-name=chaoslab
  start_bg kube-scheduler "$KUBE_SCHEDULER_BIN" \
    --kubeconfig="$dir/kubeconfig" \
    --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false
  start_bg kwok "$KWOK_BIN" \
    --kubeconfig="$dir/kubeconfig" --config="$KWOK_STAGES" \
    --manage-all-nodes=false --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake \
    --cidr=127.0.1.0/24 --node-ip=127.0.0.1 --node-lease-duration-seconds=40
  api POST /api/v1/nodes '{"apiVersion":"v1","kind":"Node","metadata":{"name":"kwok-node-0","annotations":{"kwok.x-k8s.io/node":"fake","node.alpha.kubernetes.io/ttl":"0"},"labels":{"kubernetes.io/hostname":"kwok-node-0","kubernetes.io/os":"linux","type":"kwok"}}}' >/dev/null \
    || die "could not create node kwok-node-0"
  deadline=$(( $(date +%s) + timeout ))
  # (the apiserver pretty-prints JSON for curl: strip the whitespace before matching)
  until api GET /api/v1/nodes/kwok-node-0 2>/dev/null | tr -d ' \n' | grep -q '"type":"Ready","status":"True"'; do
    alive_or_die kube-controller-manager kube-scheduler kwok
    [ "$(date +%s)" -lt "$deadline" ] || die "node kwok-node-0 not Ready after ${timeout}s (see $dir/kwok.log)"
    sleep 0.25
  done
  log "controller-manager, scheduler and kwok running; node kwok-node-0 Ready"
fi
if [ "$node" = 1 ]; then
  bash "$here/node.sh" start "$dir" || { log "the node did not come up (logs in $dir/*.log)"; exit 1; }
fi
log "use: export KUBECONFIG=$dir/kubeconfig   (or: . $dir/env)"

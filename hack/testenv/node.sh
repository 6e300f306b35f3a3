#!/usr/bin/env bash
# node.sh network|start|stop DIR — the real node of `up.sh --node DIR`; up.sh and down.sh call
# it, it is not meant to be run alone.
#   network: the bridge chaoslab0 holding the node's address 198.18.0.1/24, an `unreachable`
#            route for all of 198.18.0.0/15, IPv4 forwarding and bridge netfilter; pods get
#            198.18.1.0/24 on the CNI bridge chaoslab-pods (gateway 198.18.1.1), which the bridge
#            plugin creates (the addresses are in common.sh)
#   start:   containerd + runc, the node images, CNI (bridge, host-local, loopback, portmap),
#            kube-controller-manager, kube-scheduler, the kubelet (waits for a Ready node),
#            kube-proxy (nftables mode) and CoreDNS (waits for it to be Available)
#   stop:    removes all of it: pods (through crictl, so CNI releases their addresses and network
#            namespaces), processes, mounts, the bridge and route, nftables tables the node added,
#            data; puts IPv4 forwarding back as it was
# Services come from 198.19.0.0/16 (the apiserver's --service-cluster-ip-range in node mode):
# kubernetes is 198.19.0.1, cluster DNS 198.19.0.10. One node per machine (fixed names and ports).
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$here/common.sh"

log() { echo "node.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 2 ] || { echo "usage: $0 network|start|stop DIR" >&2; exit 2; }
cmd="$1"
dir="$(cd "$2" && pwd -P)"
nd="$dir/node" # everything of the node's, apart from the pid and log files next to up.sh's
bridge=chaoslab0
pod_bridge=chaoslab-pods
bridge_nf=/proc/sys/net/bridge/bridge-nf-call-iptables
node_name=chaoslab-node
sock="$nd/containerd/containerd.sock"
timeout="${CHAOSLAB_READY_TIMEOUT:-90}"

# shellcheck source=procs.sh
. "$here/procs.sh"
wait_until() { # $1 what, $2 names that must stay alive, $3... test command
  local what="$1" names="$2" deadline=$(( $(date +%s) + timeout ))
  shift 2
  until "$@" >/dev/null 2>&1; do
    # shellcheck disable=SC2086
    alive_or_die $names
    [ "$(date +%s)" -lt "$deadline" ] || die "$what not reached after ${timeout}s"
    sleep 0.5
  done
}
kc() { kubectl --kubeconfig "$dir/kubeconfig" "$@"; }
crictl_() { "$CRICTL_BIN" --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 10s "$@"; }

network() {
  [ "$(id -u)" = 0 ] || die "a node needs root (network, containers, mounts)"
  if ip link show "$bridge" >/dev/null 2>&1 && [ ! -f "$nd/network" ]; then
    die "$bridge exists but is not DIR's: another node runs on this machine (stop it with its down.sh)"
  fi
  mkdir -p "$nd"
  if [ ! -f "$nd/network" ]; then
    # What stop() restores or removes.
    cat /proc/sys/net/ipv4/ip_forward >"$nd/ip_forward.before"
    cat "$bridge_nf" >"$nd/bridge-nf.before" 2>/dev/null || true
    nft list tables >"$nd/nft-tables.before" 2>/dev/null || true
    ip netns list 2>/dev/null | awk '{print $1}' >"$nd/netns.before" || true
    touch "$nd/network"
  fi
  ip link show "$bridge" >/dev/null 2>&1 || ip link add "$bridge" type bridge
  ip addr replace "$NODE_IP/24" dev "$bridge"
  ip link set "$bridge" up
  # A packet for a pod or Service address never leaves through the machine's own interface,
  # whatever kube-proxy has programmed yet: the bridge's /24s are more specific than this.
  ip route replace unreachable "$TEST_RANGE"
  echo 1 >/proc/sys/net/ipv4/ip_forward
  # Bridged packets through netfilter: a reply from a Service's pod to a client pod on the same
  # bridge must meet the connection's NAT on the way back.
  [ ! -e "$bridge_nf" ] || echo 1 >"$bridge_nf"
}

containerd_config() {
  mkdir -p "$nd/containerd" "$nd/cni/net.d" "$nd/cni/ipam"
  cat >"$nd/containerd/config.toml" <<EOF
version = 2
root = "$nd/containerd/root"
state = "$nd/containerd/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.internal.v1.opt"]
  path = "$nd/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.k8s.io/pause:$PAUSE_VERSION"
  enable_unprivileged_ports = true
  enable_unprivileged_icmp = true
  # Lowering a process's oom_score_adj is refused on this machine (even to root): the kubelet
  # asks -998 for sandboxes, so clamp to containerd's own value instead, as kind does rootless.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "$nd/containerd/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$nd/cni/net.d"
    max_conf_num = 1
EOF
  cat >"$nd/cni/net.d/10-chaoslab.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "chaoslab",
  "plugins": [
    {"type": "bridge", "bridge": "$pod_bridge", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "$nd/cni/ipam",
              "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GATEWAY"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF
}

kubelet_config() {
  mkdir -p "$nd/kubelet"
  # Pods resolve through CoreDNS only: nothing outside this machine is reachable anyway.
  : >"$nd/kubelet/resolv.conf"
  cat >"$nd/kubelet/config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This machine has cgroup v1, which kubelets since 1.35 refuse unless told otherwise.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupsPerQOS: false
enforceNodeAllocatable: []
failSwapOn: false
containerRuntimeEndpoint: unix://$sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
resolvConf: $nd/kubelet/resolv.conf
podLogsDir: $nd/pod-logs
# A test machine's disk is shared with builds: only evict when it is really full.
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
maxPods: 60
EOF
}

coredns_manifest() {
  cat <<EOF
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: system:coredns}
rules:
  - apiGroups: [""]
    resources: [endpoints, services, pods, namespaces]
    verbs: [list, watch]
  - apiGroups: [discovery.k8s.io]
    resources: [endpointslices]
    verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: system:coredns}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: system:coredns}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  Corefile: |
    .:53 {
        errors
        health {
            lameduck 5s
        }
        ready
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
            ttl 30
        }
        prometheus :9153
        cache 30
        reload
        loadbalance
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      priorityClassName: system-cluster-critical
      containers:
        - name: coredns
          image: registry.k8s.io/coredns/coredns:v$COREDNS_VERSION
          imagePullPolicy: IfNotPresent
          args: [-conf, /etc/coredns/Corefile]
          ports:
            - {name: dns, containerPort: 53, protocol: UDP}
            - {name: dns-tcp, containerPort: 53, protocol: TCP}
            - {name: metrics, containerPort: 9153, protocol: TCP}
          livenessProbe: {httpGet: {path: /health, port: 8080}}
          readinessProbe: {httpGet: {path: /ready, port: 8181}}
          securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
          volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: $DNS_IP
  selector: {k8s-app: kube-dns}
  ports:
    - {name: dns, port: 53, protocol: UDP}
    - {name: dns-tcp, port: 53, protocol: TCP}
    - {name: metrics, port: 9153, protocol: TCP}
EOF
}

node_ready() { kc get node "$node_name" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True; }

start() {
  local b archives a
  for b in "$KUBE_CONTROLLER_MANAGER_BIN" "$KUBE_SCHEDULER_BIN" "$KUBELET_BIN" "$KUBE_PROXY_BIN" "$CRICTL_BIN"; do
    [ -x "$b" ] || die "$b is missing: run hack/testenv/install.sh --node"
  done
  for b in containerd runc ctr kubectl nft iptables /usr/lib/cni/bridge; do
    command -v "$b" >/dev/null || die "$b is missing: run hack/install-deps.sh"
  done
  archives="$(bash "$here/node-images.sh")"
  containerd_config
  start_bg containerd containerd --config "$nd/containerd/config.toml"
  wait_until "containerd answering on $sock" containerd ctr --address "$sock" version
  log "importing the node's images (as kind load image-archive does)"
  for a in $archives; do
    ctr --address "$sock" -n k8s.io images import --all-platforms --digests "$a" >/dev/null \
      || die "ctr images import $a failed"
  done

  start_bg kube-controller-manager "$KUBE_CONTROLLER_MANAGER_BIN" \
    --kubeconfig="$dir/kubeconfig" --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false \
    --service-account-private-key-file="$dir/pki/sa.key" --root-ca-file="$dir/pki/ca.crt" \
    --use-service-account-credentials=true --cluster-name=chaoslab
  start_bg kube-scheduler "$KUBE_SCHEDULER_BIN" \
    --kubeconfig="$dir/kubeconfig" --bind-address=127.0.0.1 --secure-port=0 --leader-elect=false

  kubelet_config
  start_bg kubelet "$KUBELET_BIN" --config="$nd/kubelet/config.yaml" --kubeconfig="$dir/kubeconfig" \
    --root-dir="$nd/kubelet/root" --cert-dir="$nd/kubelet/pki" --node-ip="$NODE_IP" \
    --hostname-override="$node_name" --v=1
  wait_until "node $node_name Ready" "containerd kubelet kube-controller-manager kube-scheduler" node_ready
  log "node $node_name is Ready"

  start_bg kube-proxy "$KUBE_PROXY_BIN" --kubeconfig="$dir/kubeconfig" --hostname-override="$node_name" \
    --proxy-mode=nftables --cluster-cidr="$POD_CIDR" --bind-address="$NODE_IP" \
    --healthz-bind-address=127.0.0.1:10256 --metrics-bind-address=127.0.0.1:10249 --conntrack-max-per-core=0
  coredns_manifest | kc apply -f - >/dev/null
  wait_until "CoreDNS Available" "containerd kubelet kube-proxy kube-controller-manager kube-scheduler" \
    kc -n kube-system wait --for=condition=Available deployment/coredns --timeout=2s
  log "kube-proxy and CoreDNS ($DNS_IP) running"
}

stop() {
  [ -d "$nd" ] || return 0
  # The kubelet first, or it starts again what is being removed.
  stop_bg kubelet
  stop_bg kube-proxy
  stop_bg kube-scheduler
  stop_bg kube-controller-manager
  if pid_ours "$dir/containerd.pid" && [ -x "$CRICTL_BIN" ]; then
    log "removing every pod sandbox (CNI releases addresses and network namespaces)"
    crictl_ rmp --all --force >/dev/null 2>&1 || crictl_ rmp --all --force >&2 || true
  fi
  stop_bg containerd
  # Shims outlive containerd; any container left is killed with its shim.
  local pid
  for pid in $(pgrep -f "containerd-shim-runc-v2 .*$nd/" || true); do
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
  done
  # Mounts under DIR (kubelet volumes and its bind-mounted root, container root filesystems),
  # deepest first.
  local m
  for m in $(awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "could not unmount $m"
  done
  # Network namespaces and nftables tables that appeared while the node ran.
  local ns t
  for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep '^cni-' || true); do
    grep -qx "$ns" "$nd/netns.before" 2>/dev/null || ip netns delete "$ns" 2>/dev/null || true
  done
  while read -r t; do
    [ -n "$t" ] || continue
    # shellcheck disable=SC2086 # "table ip kube-proxy" is three words of the command
    grep -qxF "$t" "$nd/nft-tables.before" 2>/dev/null || nft delete $t 2>/dev/null || true
  done < <(nft list tables 2>/dev/null || true)
  if [ -f "$nd/network" ]; then
    ip link del "$bridge" 2>/dev/null || true
    ip link del "$pod_bridge" 2>/dev/null || true
    ip route del unreachable "$TEST_RANGE" 2>/dev/null || true
    cat "$nd/ip_forward.before" >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
    [ ! -s "$nd/bridge-nf.before" ] || cat "$nd/bridge-nf.before" >"$bridge_nf" 2>/dev/null || true
  fi
  rm -rf "$nd"
  log "node removed"
}

case "$cmd" in
  network) network ;;
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 network|start|stop DIR" >&2; exit 2 ;;
esac

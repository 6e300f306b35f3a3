#!/usr/bin/env bash
# down.sh DIR — stops what up.sh started in DIR (a real node: see node.sh stop; kwok, kube-scheduler,
# kube-controller-manager, kube-apiserver, etcd: SIGTERM, then
# SIGKILL after CHAOSLAB_STOP_TIMEOUT seconds, default 10) and deletes what up.sh wrote
# there (data, keys, kubeconfig, env, logs; with --keep-logs the *.log files stay).
# Idempotent: fine when nothing runs or DIR does not exist. Only deletes up.sh's own files,
# and DIR itself only if it is then empty.
set -euo pipefail

log() { echo "down.sh: $*" >&2; }

keep_logs=0
keep_lock=0 # up.sh calls down.sh while it holds DIR/.up.lock
args=()
for a in "$@"; do
  case "$a" in
    --keep-logs) keep_logs=1 ;;
    --keep-lock) keep_lock=1 ;;
    *) args+=("$a") ;;
  esac
done
[ "${#args[@]}" -eq 1 ] && [ -n "${args[0]}" ] || { echo "usage: $0 [--keep-logs] DIR" >&2; exit 2; }
[ -d "${args[0]}" ] || { log "${args[0]} does not exist: nothing to do"; exit 0; }
dir="$(cd "${args[0]}" && pwd -P)"

# Not while an up.sh is starting a control plane in DIR.
if [ "$keep_lock" = 0 ] && command -v flock >/dev/null; then
  exec 9>"$dir/.up.lock"
  flock 9
fi

# shellcheck source=procs.sh
. "$(dirname "${BASH_SOURCE[0]}")/procs.sh"

# A real node (up.sh --node) first: its pods, processes, mounts and network.
if [ -d "$dir/node" ]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/node.sh" stop "$dir"
fi
# Clients first, then the apiserver, then etcd (each would log errors about the next one).
stop_bg kwok "$dir/kwok.pid"
stop_bg kube-scheduler "$dir/kube-scheduler.pid"
stop_bg kube-controller-manager "$dir/kube-controller-manager.pid"
stop_bg kube-apiserver "$dir/apiserver.pid"
stop_bg etcd "$dir/etcd.pid"

rm -rf "$dir/etcd-data" "$dir/apiserver-certs" "$dir/pki" "$dir/kubeconfig" "$dir/env" "$dir/audit-policy.yaml"
if [ "$keep_logs" = 0 ]; then
  rm -f "$dir/etcd.log" "$dir/apiserver.log" "$dir/kube-controller-manager.log" \
    "$dir/kube-scheduler.log" "$dir/kwok.log" "$dir/audit.log" "$dir/containerd.log" "$dir/kubelet.log" \
    "$dir/kube-proxy.log"
fi
if [ "$keep_lock" = 0 ]; then
  rm -f "$dir/.up.lock"
  rmdir "$dir" 2>/dev/null || true
fi
log "control plane in $dir is down"

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
timeout="${CHAOSLAB_STOP_TIMEOUT:-10}"

# Not while an up.sh is starting a control plane in DIR.
if [ "$keep_lock" = 0 ] && command -v flock >/dev/null; then
  exec 9>"$dir/.up.lock"
  flock 9
fi

# Only a live process whose command line names DIR is ours (guards against pid reuse).
our_pid() { # $1 pid file; prints the pid
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/" || return 1
  echo "$pid"
}

stop() { # $1 name, $2 pid file
  local pid i
  if ! pid="$(our_pid "$2")"; then
    rm -f "$2"
    return 0
  fi
  log "stopping $1 (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    [ -e "/proc/$pid" ] || break
    # A zombie (not reaped by its parent) has stopped already.
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
    sleep 0.1
  done
  if [ -e "/proc/$pid" ] && [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
    log "$1 (pid $pid) did not stop within ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      [ -e "/proc/$pid" ] || break
      [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ] && break
      sleep 0.1
    done
  fi
  rm -f "$2"
}

# A real node (up.sh --node) first: its pods, processes, mounts and network.
if [ -d "$dir/node" ]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/node.sh" stop "$dir"
fi
# Clients first, then the apiserver, then etcd (each would log errors about the next one).
stop kwok "$dir/kwok.pid"
stop kube-scheduler "$dir/kube-scheduler.pid"
stop kube-controller-manager "$dir/kube-controller-manager.pid"
stop kube-apiserver "$dir/apiserver.pid"
stop etcd "$dir/etcd.pid"

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

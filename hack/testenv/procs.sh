# shellcheck shell=bash
# Background processes of a DIR, for up.sh, down.sh and node.sh. Sourced, not executed; the caller
# sets $dir (absolute) and log(). Each process has DIR/NAME.pid and DIR/NAME.log.

# our_pid FILE: prints the pid in FILE if that process is alive and its command line names
# $dir/ (so a reused pid is never taken for ours).
our_pid() {
  local pid
  [ -f "$1" ] || return 1
  pid="$(cat "$1" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ -r "/proc/$pid/cmdline" ] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$dir/" || return 1
  echo "$pid"
}
pid_ours() { our_pid "$1" >/dev/null; }

# start_bg NAME COMMAND...: starts COMMAND in its own session (it outlives the caller and holds
# none of its pipes), output to DIR/NAME.log; does nothing if NAME runs already.
start_bg() {
  local name="$1"; shift
  if pid_ours "$dir/$name.pid"; then return 0; fi
  log "starting $name"
  setsid "$@" </dev/null >"$dir/$name.log" 2>&1 9>&- &
  echo "$!" >"$dir/$name.pid"
}

# alive_or_die NAME...: exits 1, showing the tail of its log, if one of them no longer runs.
alive_or_die() {
  local n
  for n in "$@"; do
    pid_ours "$dir/$n.pid" || { log "error: $n exited; last lines of $dir/$n.log:"; tail -n 40 "$dir/$n.log" >&2; exit 1; }
  done
}

# stop_bg NAME [PIDFILE]: SIGTERM, then SIGKILL after CHAOSLAB_STOP_TIMEOUT seconds (default 10);
# removes the pid file. Fine when it does not run.
stop_bg() {
  local name="$1" file="${2:-$dir/$1.pid}" pid i timeout="${CHAOSLAB_STOP_TIMEOUT:-10}"
  stopped() { [ ! -e "/proc/$pid" ] || [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; }
  if ! pid="$(our_pid "$file")"; then
    rm -f "$file"
    return 0
  fi
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do stopped && break; sleep 0.1; done
  if ! stopped; then
    log "$name (pid $pid) did not stop within ${timeout}s: SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do stopped && break; sleep 0.1; done
  fi
  rm -f "$file"
}

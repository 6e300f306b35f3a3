#!/usr/bin/env bash
# Throughput and latency through chaoslab's fault proxy vs through a real toxiproxy-server, no toxics,
# same load: a real redis-server, one proxy to it on each server, and redis-benchmark driving
# direct / via toxiproxy-server / via faultproxy, interleaved for ROUNDS rounds (medians reported).
#
#   hack/bench-faultproxy.sh                 # N=200000 C=50 TESTS=get,set ROUNDS=3
#   N=50000 ROUNDS=1 hack/bench-faultproxy.sh
#
# Needs redis-server and redis-benchmark on PATH and toxiproxy-server (TOXIPROXY_SERVER, default the
# cached build of hack/versions.env's TOXIPROXY_VERSION). Everything listens on 127.0.0.1 and is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-200000}
C=${C:-50}
TESTS=${TESTS:-get,set}
ROUNDS=${ROUNDS:-3}
# shellcheck source=versions.sh
. hack/versions.sh
TOXIPROXY_SERVER=${TOXIPROXY_SERVER:-${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}/bin/toxiproxy-server-$TOXIPROXY_VERSION}
TARGET_DIR=${CARGO_TARGET_DIR:-target}

for bin in redis-server redis-benchmark curl; do
  command -v "$bin" >/dev/null || { echo "missing $bin" >&2; exit 1; }
done
[ -x "$TOXIPROXY_SERVER" ] || { echo "missing $TOXIPROXY_SERVER (hack/install-toxiproxy.sh installs it)" >&2; exit 1; }

echo "building the fault proxy (release)..." >&2
CARGO_TARGET_DIR="$TARGET_DIR" cargo build --quiet --release -p chaoslab --bin chaoslab
FAULTPROXY="$TARGET_DIR/release/chaoslab"

WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Free loopback ports, outside the ephemeral range where possible.
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 12000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  echo "no free port" >&2; exit 1
}

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on $1" >&2; exit 1
}

REDIS=$(free_port)
TP_ADMIN=$(free_port)
FP_ADMIN=$(free_port)
TP_PROXY=$(free_port)
FP_PROXY=$(free_port)

redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --loglevel warning >"$WORK/redis.log" 2>&1 &
PIDS+=($!)
LOG_LEVEL=warn "$TOXIPROXY_SERVER" -host 127.0.0.1 -port "$TP_ADMIN" >"$WORK/toxiproxy.log" 2>&1 &
PIDS+=($!)
"$FAULTPROXY" proxy --listen "127.0.0.1:$FP_ADMIN" >"$WORK/faultproxy.log" 2>&1 &
PIDS+=($!)
wait_port "$REDIS"
wait_port "$TP_ADMIN"
wait_port "$FP_ADMIN"

for pair in "$TP_ADMIN:$TP_PROXY" "$FP_ADMIN:$FP_PROXY"; do
  admin=${pair%%:*} listen=${pair##*:}
  curl -sf -X POST "http://127.0.0.1:$admin/proxies" \
    -d "{\"name\":\"redis\",\"listen\":\"127.0.0.1:$listen\",\"upstream\":\"127.0.0.1:$REDIS\"}" >/dev/null
done

bench() { # name port round
  redis-benchmark -h 127.0.0.1 -p "$2" -c "$C" -n "$N" -t "$TESTS" --csv 2>/dev/null |
    tail -n +2 | tr -d '"' | awk -F, -v t="$1" '{ print t, $1, $2, $5, $7 }' >>"$WORK/results"
}

echo "warming up..." >&2
for port in "$REDIS" "$TP_PROXY" "$FP_PROXY"; do
  redis-benchmark -h 127.0.0.1 -p "$port" -c "$C" -n 10000 -t "$TESTS" -q >/dev/null 2>&1
done
for round in $(seq 1 "$ROUNDS"); do
  echo "round $round/$ROUNDS..." >&2
  bench direct "$REDIS"
  bench toxiproxy "$TP_PROXY"
  bench faultproxy "$FP_PROXY"
done

# results: target test rps p50_ms p99_ms, one line per round.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
calc() { awk "BEGIN { print $1 }"; }
metric() { awk -v t="$1" -v s="$2" -v c="$3" '$1 == t && $2 == s { print $c }' "$WORK/results" | median; }

echo
echo "redis-benchmark -c $C -n $N -t $TESTS, median of $ROUNDS round(s), $(nproc) cores"
printf '%-6s %-11s %12s %9s %9s %14s %14s\n' test via ops/s p50_ms p99_ms added_p50_ms added_p99_ms
for test in $(awk '{ print $2 }' "$WORK/results" | sort -u); do
  d50=$(metric direct "$test" 4)
  d99=$(metric direct "$test" 5)
  for via in direct toxiproxy faultproxy; do
    rps=$(metric "$via" "$test" 3)
    p50=$(metric "$via" "$test" 4)
    p99=$(metric "$via" "$test" 5)
    printf '%-6s %-11s %12.0f %9.3f %9.3f %14.3f %14.3f\n' "$test" "$via" "$rps" "$p50" "$p99" \
      "$(calc "$p50 - $d50")" "$(calc "$p99 - $d99")"
  done
  t_rps=$(metric toxiproxy "$test" 3) f_rps=$(metric faultproxy "$test" 3)
  t50=$(metric toxiproxy "$test" 4) f50=$(metric faultproxy "$test" 4)
  t99=$(metric toxiproxy "$test" 5) f99=$(metric faultproxy "$test" 5)
  printf '%-6s faultproxy/toxiproxy: throughput x%.2f, p50 x%.2f, p99 x%.2f (above 1 is faster for throughput, slower for latency)\n' \
    "$test" "$(calc "$f_rps / $t_rps")" "$(calc "$f50 / $t50")" "$(calc "$f99 / $t99")"
done

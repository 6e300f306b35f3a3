#!/usr/bin/env bash
# The benchmarks in one report: the operator (phase lateness, reconcile time, memory), the fault
# proxy (beside toxiproxy-server and a direct connection), the loadgen (beside redis-benchmark) and
# the loadgen's open model (schedule kept, latency from the schedule and from the send, beside the
# closed model). Writes docs/benchmarks.md with the machine, the date and the command; prints it too.
# Figures only: nothing here asserts or gates CI.
#   bash hack/bench.sh           # short: about 4 minutes on two cores
#   bash hack/bench.sh --long    # the sizes the issues quote: 500 scenarios (and 5,000 finished),
#                                # 200,000 requests, 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
long=false
case "${1:-}" in
  --long) long=true ;;
  "") ;;
  *) echo "usage: bash hack/bench.sh [--long]" >&2; exit 2 ;;
esac
if $long; then
  export SCENARIOS=${SCENARIOS:-500} FINISHED=${FINISHED:-5000} ROUNDS=${ROUNDS:-3} N=${N:-200000}
  rates=(20000 50000); secs=10
else
  export SCENARIOS=${SCENARIOS:-50} FINISHED=${FINISHED:-500} ROUNDS=${ROUNDS:-1} N=${N:-50000}
  rates=(20000 50000); secs=5
fi
bash hack/install-deps.sh >/dev/null
out=$(mktemp -d)
trap 'rm -rf "$out"; redis-cli -p "${port:-0}" shutdown nosave >/dev/null 2>&1 || true' EXIT

section() { echo "== $1" >&2; }

section "operator ($SCENARIOS scenarios)"
bash hack/bench-operator.sh >"$out/operator.txt" 2>"$out/operator.err" || { cat "$out/operator.err" >&2; exit 1; }
for c in 50 1000; do
  section "fault proxy (N=$N, C=$c)"
  C=$c bash hack/bench-faultproxy.sh >>"$out/faultproxy.txt" 2>"$out/faultproxy.err" || { cat "$out/faultproxy.err" >&2; exit 1; }
done
section "loadgen vs redis-benchmark (N=$N)"
bash hack/bench-loadgen.sh >"$out/loadgen.txt" 2>"$out/loadgen.err" || { cat "$out/loadgen.err" >&2; exit 1; }

section "loadgen open model"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --save '' --appendonly no --daemonize yes --logfile "$out/redis.log"
for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
loadgen="${CARGO_TARGET_DIR:-target}/release/chaoslab-loadgen"
common=(--targets "127.0.0.1:$port" --max-procs 2 --duration "${secs}s" --metrics-addr off --progress-interval 0)
{
  echo "closed model, --concurrency 64:"
  "$loadgen" "${common[@]}" --concurrency 64 2>&1 | grep -E "^(ops|latency)"
  for r in "${rates[@]}"; do
    echo
    # The closed model's 64 connections; up to 256 requests in flight, those waiting for a
    # connection included: the sends due within one timer tick go out together.
    echo "open model, --rate $r, --concurrency 256 --pool-size 64:"
    "$loadgen" "${common[@]}" --rate "$r" --concurrency 256 --pool-size 64 2>&1 | grep -E "^(ops|schedule|latency|send lag)|warning"
  done
} >"$out/open.txt"

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
{
  echo "# Benchmarks"
  echo
  echo "Written by \`bash hack/bench.sh${1:+ $1}\` on $(date -u +%Y-%m-%d) at commit $(git rev-parse --short HEAD)$(git diff --quiet -- . ':!docs/benchmarks.md' || echo ' (with local changes)')."
  echo "Machine: $(nproc) cores ($cpu), $mem, $(uname -sr). Figures only: each sits beside the"
  echo "anchor measured in the same run (toxiproxy-server, a direct connection, redis-benchmark, the"
  echo "closed model); nothing here gates CI. Each benchmark's own source says what it measures:"
  echo "\`operator/examples/bench/main.rs\`, \`faultproxy/examples/bench_faultproxy.rs\`,"
  echo "\`loadgen/examples/bench_loadgen.rs\`."
  for part in "operator:Operator: phase lateness, reconcile time, memory (SCENARIOS=$SCENARIOS, FINISHED=$FINISHED)" \
              "faultproxy:Fault proxy beside toxiproxy-server and a direct connection (N=$N; 50, then 1,000 connections)" \
              "loadgen:Loadgen beside redis-benchmark (N=$N)" \
              "open:Loadgen open model beside the closed model (${secs} s each, local redis-server)"; do
    echo
    echo "## ${part#*:}"
    echo
    echo '```'
    cat "$out/${part%%:*}.txt"
    echo '```'
  done
} >docs/benchmarks.md
cat docs/benchmarks.md

#!/usr/bin/env bash
# bench-loadgen.sh — chaoslab-loadgen vs redis-benchmark against the same real redis-server.
#
# Starts its own redis-server on a free loopback port (no proxy), then for GET and SET at
# concurrency 50 and 100 runs, for a fixed number of requests each:
#   redis-benchmark -c C -n N -t get|set -r KEYS -d VALUE --csv   (single-threaded, as shipped)
#   chaoslab-loadgen --concurrency C --requests N --read-ratio 1|0 --max-procs PROCS --output json
# and prints ops/s of both, the ratio, p50/p99 of both, then loadgen's peak RSS at concurrency
# 100 and 1000 (from /proc/PID/status VmHWM).
#
# Env: N (requests per run, default 200000), PROCS (loadgen --max-procs, default 2),
#      KEYS (default 10000), VALUE (bytes, default 3 = redis-benchmark's default),
#      REDIS_SERVER, REDIS_BENCHMARK (binaries), LOADGEN (binary; default: build release),
#      CARGO_TARGET_DIR (for the build).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
n="${N:-200000}"
procs="${PROCS:-2}"
keys="${KEYS:-10000}"
value="${VALUE:-3}"
redis_server="${REDIS_SERVER:-/usr/bin/redis-server}"
redis_benchmark="${REDIS_BENCHMARK:-/usr/bin/redis-benchmark}"

for b in "$redis_server" "$redis_benchmark" python3; do
  command -v "$b" >/dev/null || { echo "bench-loadgen: $b not found (hack/install-deps.sh installs redis)" >&2; exit 1; }
done

if [ -z "${LOADGEN:-}" ]; then
  echo "bench-loadgen: building chaoslab-loadgen (release)..." >&2
  (cd "$root" && cargo build --release -q -p chaoslab-loadgen)
  LOADGEN="${CARGO_TARGET_DIR:-$root/target}/release/chaoslab-loadgen"
fi

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
tmp="$(mktemp -d)"
"$redis_server" --port "$port" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
  --daemonize no --loglevel warning --maxclients 10000 >"$tmp/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true; wait "$redis_pid" 2>/dev/null || true; rm -rf "$tmp"' EXIT
# (Not redis-benchmark: it spins forever on a refused connection.)
python3 - "$port" <<'EOF'
import socket, sys, time
deadline = time.time() + 10
while time.time() < deadline:
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit("bench-loadgen: redis-server did not answer")
EOF

# Runs loadgen, prints "ops_per_sec p50 p99 peak_rss_kib".
loadgen() {
  local c=$1 ratio=$2 requests=$3
  "$LOADGEN" --targets "127.0.0.1:$port" --concurrency "$c" --requests "$requests" --read-ratio "$ratio" \
    --keys "$keys" --value-size "$value" --max-procs "$procs" --metrics-addr off --progress-interval 0 \
    --output json >"$tmp/out.json" 2>"$tmp/err.log" &
  local pid=$! hwm=0
  while kill -0 "$pid" 2>/dev/null; do
    local v
    v="$(awk '/^VmHWM:/ {print $2}' "/proc/$pid/status" 2>/dev/null || true)"
    [ -n "$v" ] && hwm=$v
    sleep 0.05
  done
  wait "$pid" || { cat "$tmp/err.log" >&2; return 1; }
  python3 - "$tmp/out.json" "$hwm" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
l = s["latency_ms"]
print(f'{s["ops_per_sec"]:.0f} {l["p50"]:.3f} {l["p99"]:.3f} {sys.argv[2]}')
EOF
}

# Runs redis-benchmark, prints "ops_per_sec p50 p99".
benchmark() {
  local c=$1 test=$2
  "$redis_benchmark" -p "$port" -c "$c" -n "$n" -t "$test" -r "$keys" -d "$value" --csv 2>/dev/null | python3 -c '
import csv, sys
rows = list(csv.reader(sys.stdin))
head, row = rows[0], rows[1]
d = dict(zip(head, row))
print("%.0f %.3f %.3f" % (float(d["rps"]), float(d["p50_latency_ms"]), float(d["p99_latency_ms"])))'
}

echo "redis-server $("$redis_server" --version | awk '{print $3}') on 127.0.0.1:$port; $(nproc) CPUs; N=$n requests per run; loadgen --max-procs $procs"
printf '%-4s %5s | %12s %8s %8s | %12s %8s %8s | %6s\n' test c "bench ops/s" p50ms p99ms "loadgen ops/s" p50ms p99ms ratio
for test in get set; do
  ratio=1; [ "$test" = set ] && ratio=0
  for c in 50 100; do
    read -r b_ops b_p50 b_p99 < <(benchmark "$c" "$test")
    read -r l_ops l_p50 l_p99 _ < <(loadgen "$c" "$ratio" "$n")
    r="$(python3 -c "print(f'{$l_ops/$b_ops:.2f}')")"
    printf '%-4s %5s | %12s %8s %8s | %12s %8s %8s | %6s\n' "$test" "$c" "$b_ops" "$b_p50" "$b_p99" "$l_ops" "$l_p50" "$l_p99" "${r}x"
  done
done

echo
echo "loadgen peak RSS (GET, $n requests):"
for c in 100 1000; do
  read -r _ _ _ rss < <(loadgen "$c" 1 "$n")
  echo "  concurrency $c: $((rss / 1024)) MiB (VmHWM ${rss} KiB)"
done

#!/usr/bin/env bash
# Throughput and latency through chaoslab's fault proxy vs a real toxiproxy-server: runs
# faultproxy/examples/bench_faultproxy.rs, which documents what it measures and its environment
# (N, C, TESTS, ROUNDS, REDIS_SERVER, REDIS_BENCHMARK, TOXIPROXY_SERVER). Prints figures; asserts nothing.
#   N=50000 ROUNDS=1 bash hack/bench-faultproxy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# The example runs the fault proxy as `chaoslab proxy`, from the binary built next to it.
cargo build -q --release -p chaoslab --bin chaoslab -p chaoslab-faultproxy --example bench_faultproxy
exec "${CARGO_TARGET_DIR:-target}/release/examples/bench_faultproxy"

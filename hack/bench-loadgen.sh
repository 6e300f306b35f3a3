#!/usr/bin/env bash
# chaoslab-loadgen vs redis-benchmark on the same real redis-server: runs
# loadgen/examples/bench_loadgen.rs, which documents what it measures and its environment (N, PROCS,
# KEYS, VALUE, REDIS_SERVER, REDIS_BENCHMARK, LOADGEN). Prints figures; asserts nothing.
#   N=50000 bash hack/bench-loadgen.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p chaoslab-loadgen --bin chaoslab-loadgen --example bench_loadgen
exec "${CARGO_TARGET_DIR:-target}/release/examples/bench_loadgen"

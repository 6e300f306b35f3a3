#!/usr/bin/env bash
# Operator benchmark: lateness of phase transitions, reconcile durations, RSS and CPU idle and with
# SCENARIOS (default 50) concurrent scenarios on separate targets. Prints figures; asserts nothing.
#   SCENARIOS=50 ROUNDS=1 bash hack/bench-operator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh >/dev/null
cargo build -q --release -p chaoslab-operator --bin chaoslab-operator --example bench
exec target/release/examples/bench

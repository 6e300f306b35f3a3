#!/usr/bin/env bash
# Operator benchmark: lateness of phase transitions, reconcile durations, RSS and CPU idle and in
# rounds of SCENARIOS (default 50) concurrent scenarios on separate targets: started together (SHARED
# rounds, default 1), spread over SPREAD seconds (default 10, 0 skips), beside one slow Toxiproxy
# (SLOW=1, the default), and with FINISHED (default 0) finished scenarios present. Prints figures;
# asserts nothing. See operator/examples/bench/main.rs.
#   SCENARIOS=500 FINISHED=5000 bash hack/bench-operator.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh >/dev/null
cargo build -q --release -p chaoslab-operator --bin chaoslab-operator --example bench
exec target/release/examples/bench

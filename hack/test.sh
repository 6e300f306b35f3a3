#!/usr/bin/env bash
# The test command: installs what the tests need (first run only), then checks formatting,
# lints, the generated CRD and runs every test against the real peers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash hack/install-deps.sh
echo "== flake.nix" >&2
bash hack/check-flake.sh 2>&1 | grep -v "build-users-group"
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked --no-fail-fast

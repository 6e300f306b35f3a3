#!/usr/bin/env bash
# The test command: installs what the tests need (first run only), then checks formatting,
# lints, the generated CRD and runs every test against the real peers on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
# A full build of the tests takes about 3 GiB under target/ and the tests' peers about 1 GiB more;
# say so up front rather than fail in the linker.
free_kib="$(df -Pk . | awk 'NR==2 {print $4}')"
if [ "$free_kib" -lt $((6 * 1024 * 1024)) ]; then
    echo "test.sh: only $((free_kib / 1024)) MiB free on $(df -P . | awk 'NR==2 {print $6}'); the build and tests need about 6 GiB" >&2
fi
bash hack/install-deps.sh
echo "== flake.nix" >&2
bash hack/check-flake.sh 2>&1 | grep -v "build-users-group"
echo "== cargo fmt --check" >&2
cargo fmt --all -- --check
echo "== cargo clippy" >&2
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo test" >&2
cargo test --workspace --locked --no-fail-fast

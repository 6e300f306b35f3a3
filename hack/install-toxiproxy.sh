#!/usr/bin/env bash
# Builds toxiproxy-server from the Go module proxy into the cache (outside the checkout).
# Idempotent: does nothing when the versioned binary is already there.
# Prints the binary's path on stdout.
set -euo pipefail
# shellcheck source=versions.sh
. "$(dirname "$0")/versions.sh"
cache="${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}"
bin="$cache/bin/toxiproxy-server-$TOXIPROXY_VERSION"
if [ -x "$bin" ]; then echo "$bin"; exit 0; fi
command -v go >/dev/null || { echo "install-toxiproxy: go is not on PATH (Go >= 1.23 needed)" >&2; exit 1; }
mkdir -p "$cache/bin"
tmp=$(mktemp -d "$cache/toxiproxy-build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "install-toxiproxy: building toxiproxy-server v$TOXIPROXY_VERSION from the Go module proxy..." >&2
GOBIN="$tmp" GOFLAGS=-mod=mod CGO_ENABLED=0 go install -trimpath \
  -ldflags "-X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
  "github.com/Shopify/toxiproxy/v2/cmd/server@v$TOXIPROXY_VERSION" >&2
mv "$tmp/server" "$bin"
echo "$bin"

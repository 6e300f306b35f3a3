#!/usr/bin/env bash
# Installs what the tests need and is not in the checkout, idempotently:
#   - Debian packages: redis-server (real backends), redis-tools (redis-benchmark),
#     chromium (renders the HTML report in a test), prometheus (promtool and a real Prometheus
#     for the dashboard test), nix-bin (parses and evaluates flake.nix), containerd and runc
#     (import the built images as `kind load` does and run them), jq (hack/build-images.sh),
#     nftables and iproute2 (the kernel packet-loss reference: nft drops in a network namespace),
#     containernetworking-plugins and iptables (the real node's CNI: bridge, host-local, portmap)
#   - toxiproxy-server, built from the Go module proxy into ~/.cache/chaoslab
#   - the resilience4j test client (fixtures/resilience4j-client), built with Maven (JDK 17) from
#     Maven Central into ~/.cache/chaoslab
#   - the Kubernetes test control plane (kube-apiserver, etcd, helm) and a real node (kubelet,
#     kube-proxy, CoreDNS, ...), see hack/testenv/
# The tools' versions are in hack/versions.env.
# Safe to run again: every step checks first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

need_apt=()
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v redis-benchmark >/dev/null || need_apt+=(redis-tools)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v promtool >/dev/null || need_apt+=(prometheus)
command -v nix-instantiate >/dev/null || need_apt+=(nix-bin)
command -v containerd >/dev/null || need_apt+=(containerd)
command -v runc >/dev/null || need_apt+=(runc)
command -v jq >/dev/null || need_apt+=(jq)
command -v nft >/dev/null || need_apt+=(nftables)
command -v ip >/dev/null || need_apt+=(iproute2)
[ -x /usr/lib/cni/bridge ] || need_apt+=(containernetworking-plugins)
command -v iptables >/dev/null || need_apt+=(iptables)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-deps: need root to apt-get install ${need_apt[*]} (or install them yourself)" >&2
    exit 1
  fi
  echo "install-deps: apt-get install ${need_apt[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

"$here/install-toxiproxy.sh" >/dev/null
"$here/build-java-client.sh" >/dev/null
if [ -x "$here/testenv/install.sh" ]; then
  "$here/testenv/install.sh" --node
fi
echo "install-deps: ready" >&2

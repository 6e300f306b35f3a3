#!/usr/bin/env bash
# node-images.sh — builds the images the real node (up.sh --node) and the chart need besides
# chaoslab's own (hack/build-images.sh), since no registry can be reached: each one holds the
# same program at the same version as the upstream image, with the same entrypoint, user and
# ports, built or installed on this machine (see README.md, "Images"). Archives go to
# $CHAOSLAB_CACHE/images/ (kept: a rebuild happens only when one is missing); their paths are
# printed on stdout, one per line. Needs: install.sh --node, Debian's redis-server, toxiproxy-server
# (hack/install-toxiproxy.sh).
set -euo pipefail
shopt -s inherit_errexit
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$here/common.sh"
# shellcheck source=../lib/oci.sh
. "$here/../lib/oci.sh"

log() { echo "node-images.sh: $*" >&2; }
out="$CHAOSLAB_CACHE/images"
mkdir -p "$out"
redis_bin="${REDIS_SERVER:-/usr/bin/redis-server}"
toxiproxy_bin="${TOXIPROXY_SERVER:-$TESTENV_BIN/toxiproxy-server-$TOXIPROXY_VERSION}"
# The redis image tag the chart uses is a major.minor: Debian's redis-server must be that version.
REDIS_TAG="$(sed -n '/^  redis:/,/image:/s/.*tag: "\([^"]*\)".*/\1/p' "$here/../../charts/chaoslab/values.yaml")"

# $1 ref, $2 rootfs-filling function, $3 image config JSON
image() {
  local ref="$1" fill="$2" config="$3" archive work
  archive="$out/$(tr '/:' '__' <<<"$ref").tar"
  if [ ! -f "$archive" ]; then
    work="$(mktemp -d)"
    oci_base "$work"
    "$fill" "$work"
    oci_archive "$work" "$ref" "$config" "$archive"
    rm -rf "$work"
    log "$ref -> $archive ($(du -h "$archive" | cut -f1))"
  fi
  echo "$archive"
}
need() { [ -x "$1" ] || { log "$1 is missing: $2"; exit 1; }; }
need "$PAUSE_BIN" "run hack/testenv/install.sh --node"
need "$COREDNS_BIN" "run hack/testenv/install.sh --node"
need "$CONFIG_RELOADER_BIN" "run hack/testenv/install.sh --node"
need "$PROMETHEUS_BIN" "run hack/testenv/install.sh"
need "$toxiproxy_bin" "run hack/install-toxiproxy.sh"
need "$redis_bin" "apt-get install redis-server"
redis_version="$("$redis_bin" --version | sed -n 's/.* v=\([0-9.]*\).*/\1/p')"
case "$redis_version" in
  "$REDIS_TAG" | "$REDIS_TAG".*) ;;
  *) log "the chart's redis image is redis:$REDIS_TAG but $redis_bin is $redis_version"; exit 1 ;;
esac

fill_pause() { oci_copy_binary "$1" "$PAUSE_BIN" /pause; }
fill_redis() {
  oci_copy_binary "$1" "$redis_bin" /usr/local/bin/redis-server
  mkdir -p "$1/data" && chmod 0777 "$1/data"
}
fill_toxiproxy() { oci_copy_binary "$1" "$toxiproxy_bin" /toxiproxy; }
fill_prometheus() {
  oci_copy_binary "$1" "$PROMETHEUS_BIN" /bin/prometheus
  mkdir -p "$1/prometheus" "$1/etc/prometheus"
  printf 'global:\n  scrape_interval: 15s\n' >"$1/etc/prometheus/prometheus.yml"
  chmod 0777 "$1/prometheus"
}
fill_reloader() { oci_copy_binary "$1" "$CONFIG_RELOADER_BIN" /bin/prometheus-config-reloader; }
fill_coredns() { oci_copy_binary "$1" "$COREDNS_BIN" /coredns; }

cfg() { # $1 user, $2 entrypoint JSON array, $3 cmd JSON array, $4 workdir, $5 exposed ports JSON object
  jq -n --arg u "$1" --argjson e "$2" --argjson c "$3" --arg w "$4" --argjson p "$5" \
    '{User: $u, Entrypoint: $e, Cmd: $c, WorkingDir: $w, ExposedPorts: $p,
      Env: ["PATH=/usr/local/bin:/usr/bin:/bin"]}'
}
image "registry.k8s.io/pause:$PAUSE_VERSION" fill_pause "$(cfg 65535:65535 '["/pause"]' '[]' / '{}')"
image "redis:$REDIS_TAG" fill_redis "$(cfg '' '["redis-server"]' '[]' /data '{"6379/tcp": {}}')"
image "ghcr.io/shopify/toxiproxy:$TOXIPROXY_VERSION" fill_toxiproxy \
  "$(cfg '' '["/toxiproxy"]' '["-host=0.0.0.0"]' / '{"8474/tcp": {}}')"
image "quay.io/prometheus/prometheus:v$PROMETHEUS_VERSION" fill_prometheus \
  "$(cfg nobody '["/bin/prometheus"]' '["--config.file=/etc/prometheus/prometheus.yml","--storage.tsdb.path=/prometheus"]' /prometheus '{"9090/tcp": {}}')"
image "quay.io/prometheus-operator/prometheus-config-reloader:v$CONFIG_RELOADER_VERSION" fill_reloader \
  "$(cfg nobody '["/bin/prometheus-config-reloader"]' '[]' / '{}')"
image "registry.k8s.io/coredns/coredns:v$COREDNS_VERSION" fill_coredns \
  "$(cfg 65532:65532 '["/coredns"]' '[]' / '{"53/tcp": {}, "53/udp": {}, "9153/tcp": {}}')"

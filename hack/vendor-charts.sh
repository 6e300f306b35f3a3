#!/usr/bin/env bash
# Vendors the chart's dependencies (Prometheus, Grafana) into charts/chaoslab/charts/ with
# Chart.lock: `helm dependency update` against the repositories named in Chart.yaml. Run it after
# changing a dependency's version there; the result is committed, so installing the chart and the
# tests need no network. It needs those repositories reachable; where they are not, it says so
# and changes nothing (helm works on a copy of the chart, copied back only when it succeeded).
# Uses $HELM, else the cached helm of hack/versions.env, else helm on PATH.
set -euo pipefail
if [ $# -gt 0 ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  case "$1" in -h|--help) exit 0 ;; *) echo "vendor-charts: takes no arguments" >&2; exit 2 ;; esac
fi
here="$(cd "$(dirname "$0")" && pwd)"
chart="$(cd "$here/../charts/chaoslab" && pwd)"

# shellcheck source=testenv/common.sh
source "$here/testenv/common.sh"
helm="${HELM:-$HELM_BIN}"
[ -x "$helm" ] || helm="$(command -v helm)" \
  || { echo "vendor-charts: no helm: run hack/testenv/install.sh or put helm on PATH" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# -L: the chart's files/ links point outside it, which a copy elsewhere would break.
cp -RL "$chart" "$tmp/chaoslab"
if ! "$helm" dependency update "$tmp/chaoslab" >&2; then
  echo "vendor-charts: helm dependency update failed (are the repositories in" \
    "charts/chaoslab/Chart.yaml reachable?); nothing changed" >&2
  exit 1
fi

rm -f "$chart"/charts/*.tgz
cp "$tmp"/chaoslab/charts/*.tgz "$chart/charts/"
cp "$tmp/chaoslab/Chart.lock" "$chart/Chart.lock"
"$helm" dependency list "$chart" >&2

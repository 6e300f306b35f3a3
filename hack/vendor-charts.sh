#!/usr/bin/env bash
# Vendors the chart's dependencies (Prometheus, Grafana) into charts/chaoslab/charts/ the way
# `helm dependency build` leaves them: one packaged archive per dependency plus Chart.lock.
# The chart repositories can't be reached from here, so the charts' sources come through the
# Go module proxy (checksummed by sum.golang.org) at the commits pinned below, and are packaged
# with the real helm. Run it after changing a pinned commit or a version in Chart.yaml; the
# result is committed, so installing the chart and the tests need no network.
set -euo pipefail
if [ $# -gt 0 ]; then
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  case "$1" in -h|--help) exit 0 ;; *) echo "vendor-charts: takes no arguments" >&2; exit 2 ;; esac
fi
here="$(cd "$(dirname "$0")" && pwd)"
chart="$here/../charts/chaoslab"
# prometheus-community/helm-charts at prometheus-29.27.0 (its subcharts from the same commit).
PROMETHEUS_MOD="github.com/prometheus-community/helm-charts@v0.0.0-20260828105119-ed5d7d9b5933"
# The grafana chart's current home (it moved from grafana/helm-charts), at grafana-13.0.1.
GRAFANA_MOD="github.com/grafana-community/helm-charts@v0.0.0-20260829030558-dbf9f4fb5fa1"

# shellcheck source=testenv/common.sh
source "$here/testenv/common.sh"
helm="$HELM_BIN"
[ -x "$helm" ] || { echo "vendor-charts: $helm is missing; run hack/testenv/install.sh first" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
moddir() { (cd "$tmp" && GOFLAGS=-mod=mod GOWORK=off go mod download -json "$1") | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p'; }
prom="$(moddir "$PROMETHEUS_MOD")/charts"
graf="$(moddir "$GRAFANA_MOD")/charts"
[ -d "$prom/prometheus" ] && [ -d "$graf/grafana" ] || { echo "vendor-charts: module download failed" >&2; exit 1; }

# Prometheus with its own (disabled by default here, but installable) subcharts inside.
cp -r "$prom/prometheus" "$tmp/prometheus"
chmod -R u+w "$tmp/prometheus"
mkdir -p "$tmp/prometheus/charts"
# Unpacked (helm reads a subchart directory as it reads an archive): a nested archive would carry
# new timestamps on every run.
for sub in alertmanager kube-state-metrics prometheus-node-exporter prometheus-pushgateway; do
  cp -r "$prom/$sub" "$tmp/prometheus/charts/$sub"
done
chmod -R u+w "$tmp/prometheus"
"$helm" dependency list "$tmp/prometheus" | tee /dev/stderr | awk 'NR>1 && NF && $NF!="unpacked" {bad=1} END {exit bad}' \
  || { echo "vendor-charts: prometheus's subcharts don't match its Chart.yaml" >&2; exit 1; }

mkdir -p "$tmp/out"
"$helm" package "$tmp/prometheus" -d "$tmp/out" >/dev/null
"$helm" package "$graf/grafana" -d "$tmp/out" >/dev/null
# helm package stamps times into the archive and orders subcharts as they load: keep an existing
# archive whose files are the same.
contents() {
  local d; d="$(mktemp -d "$tmp/contents.XXXXXX")"
  tar -xzf "$1" -C "$d"
  (cd "$d" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum
}
mkdir -p "$chart/charts"
for old in "$chart"/charts/*.tgz; do
  [ -e "$old" ] && [ ! -e "$tmp/out/$(basename "$old")" ] && rm -f "$old"
done
for new in "$tmp"/out/*.tgz; do
  old="$chart/charts/$(basename "$new")"
  if [ -e "$old" ] && [ "$(contents "$old")" = "$(contents "$new")" ]; then continue; fi
  mv "$new" "$old"
  echo "vendor-charts: updated $(basename "$new")" >&2
done
(cd "$here/chartlock" && GOWORK=off go run . "$chart")
"$helm" dependency list "$chart" >&2
ls -l "$chart/charts" >&2

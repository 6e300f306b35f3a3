#!/usr/bin/env bash
# Builds the test control plane's binaries from the Go module proxy into
#   ${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}/bin/<name>-v<version>
# Default: kube-apiserver, etcd, helm, prometheus.  With --all (or CHAOSLAB_TESTENV_ALL=1) also
# kube-controller-manager, kube-scheduler and kwok. With --node (or CHAOSLAB_TESTENV_NODE=1) what
# a real node needs (up.sh --node): kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
# coredns, prometheus-config-reloader, pause and crictl.
# Idempotent: a binary already in the cache is not rebuilt. A failed build leaves nothing.
# Progress goes to stderr; the summary ("name  path" per present binary) to stdout.
#
# Env: KUBE_VERSION, ETCD_VERSION, HELM_VERSION, KWOK_VERSION, PROMETHEUS_VERSION, COREDNS_VERSION,
#      CONFIG_RELOADER_VERSION, PAUSE_VERSION, CRICTL_VERSION (defaults in hack/versions.env), CHAOSLAB_CACHE,
#      CHAOSLAB_BUILD_JOBS (go build -p, default 2),
#      CHAOSLAB_BUILD_NICE (niceness of the builds, default 10).
set -euo pipefail
shopt -s inherit_errexit  # set -e also inside $(...)

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=common.sh
. "$here/common.sh"

all="${CHAOSLAB_TESTENV_ALL:-0}"
node="${CHAOSLAB_TESTENV_NODE:-0}"
for arg in "$@"; do
  case "$arg" in
    --all) all=1 ;;
    --node) node=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument: $arg (use --all, --node or --help)" >&2; exit 2 ;;
  esac
done

log() { echo "install.sh: $*" >&2; }

command -v go >/dev/null || { log "go is not on PATH (Go >= 1.26 needed for Kubernetes $KUBE_VERSION)"; exit 1; }

jobs="${CHAOSLAB_BUILD_JOBS:-2}"
niceness="${CHAOSLAB_BUILD_NICE:-10}"
src_root="$CHAOSLAB_CACHE/src"
log_dir="$CHAOSLAB_CACHE/logs"
mkdir -p "$TESTENV_BIN" "$src_root" "$log_dir" "$CHAOSLAB_CACHE/tmp"

# One install at a time per cache (two test runs starting together must not race).
if command -v flock >/dev/null; then
  exec 9>"$CHAOSLAB_CACHE/.testenv-install.lock"
  flock 9
  # Holding the lock, no other install.sh runs: scratch left by an interrupted one can go.
  rm -rf "$CHAOSLAB_CACHE/tmp"
  mkdir -p "$CHAOSLAB_CACHE/tmp"
fi

export GOWORK=off CGO_ENABLED=0
# The go command's scratch files go into the cache too (the Go build cache stays in GOCACHE).
export GOTMPDIR="$CHAOSLAB_CACHE/tmp"
# Keep the go command itself modest too; the compile jobs are capped by -p.
export GOMAXPROCS="${GOMAXPROCS:-$jobs}"

# go, niced, without its hundreds of "go: downloading ..." lines on stderr.
gocmd() { { nice -n "$niceness" go "$@" 2>&1 1>&3 3>&- | sed -u '/^go: downloading /d' >&2; } 3>&1; }

# Each build runs in its own subshell: a scratch dir in the cache, removed when it exits.
# (Global, not local: the EXIT trap runs after the build function has returned.)
build_tmp=""
new_build_tmp() { # $1 name
  build_tmp="$(mktemp -d "$CHAOSLAB_CACHE/tmp/$1.XXXXXX")"
  trap 'rm -rf "$build_tmp"' EXIT
}

# go_build DIR OUT WHAT ARGS...: `go build ARGS` in the (helper) module DIR, into a scratch file
# moved to OUT only once built, so a failed build leaves nothing. WHAT names it in the progress line.
go_build() {
  local dir="$1" out="$2" what="$3" name
  shift 3
  name="$(basename "$out")"
  new_build_tmp "$name"
  log "building $what (minutes the first time)..."
  (cd "$dir" && gocmd build -p "$jobs" -trimpath -o "$build_tmp/$name" "$@")
  mv -f "$build_tmp/$name" "$out"
}

# go_install OUT WHAT ARGS...: `go install ARGS` (ending in pkg@version), the same way.
go_install() {
  local out="$1" what="$2" pkg
  shift 2
  pkg="${*: -1}"
  pkg="${pkg%@*}"
  new_build_tmp "$(basename "$out")"
  log "building $what (minutes the first time)..."
  GOBIN="$build_tmp" gocmd install -p "$jobs" -trimpath "$@"
  mv -f "$build_tmp/${pkg##*/}" "$out"
}

# $1: module@version. Prints the path of its go.mod in the module cache.
gomod_of() {
  local json path
  json="$(go mod download -json "$1" 2>&1)" || true
  if grep -q '"Error"' <<<"$json" || ! grep -q '"GoMod"' <<<"$json"; then
    log "cannot get $1 from the Go module proxy:"
    { sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' <<<"$json" | sed 's/\\n/\n/g; s/\\t/  /g'
      grep -q '"Error"' <<<"$json" || echo "$json"; } | sed 's/^/    /' >&2
    return 1
  fi
  path="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
  [ -n "$path" ] && [ -f "$path" ] || { log "no go.mod found for $1"; return 1; }
  echo "$path"
}

# Runs "go mod tidy" in $1, output to a log; shows the log's tail on failure.
tidy() {
  local dir="$1" name="$2" logf="$log_dir/$2-tidy.log"
  log "resolving modules for $name (go mod tidy; log: $logf)..."
  if ! (cd "$dir" && gocmd mod tidy) >"$logf" 2>&1; then
    log "go mod tidy failed in $dir:"
    tail -n 30 "$logf" >&2
    return 1
  fi
}

# $1: a go.mod. Prints, tab-indented for a replace block, each of its replace directives that
# points at a published module version (not a local path): they apply to a helper module too.
published_replaces() {
  awk '/^replace[[:space:]]*\(/{b=1;next} b&&/^\)/{b=0} b{print} /^replace[[:space:]]+[^(]/{sub(/^replace[[:space:]]+/,"");print}' "$1" \
    | grep '=>' | grep -v '=>[[:space:]]*\.' | sed 's/^[[:space:]]*/\t/' || true
}

# ---- helper module for k8s.io/kubernetes ------------------------------------------
# k8s.io/kubernetes points every staging module at ./staging/src/... (kubernetes#79384);
# the helper module requires it and replaces each staging module with its published
# v0.Y.Z, derived from the tag's own go.mod.
# Every command built from it is a tool of the helper module, so that tidy records their modules.
kube_tools=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy)
kube_module() {
  local dir="$src_root/kube-v$KUBE_VERSION"
  local staging_version="0.${KUBE_VERSION#*.}"
  # The marker holds the tool list it was tidied for: a longer list tidies again.
  [ "$(cat "$dir/.tidy-ok" 2>/dev/null)" = "${kube_tools[*]}" ] && { echo "$dir"; return 0; }
  local upstream
  upstream="$(gomod_of "k8s.io/kubernetes@v$KUBE_VERSION")"
  mkdir -p "$dir"
  rm -f "$dir/go.sum"
  {
    echo "// Generated by hack/testenv/install.sh from k8s.io/kubernetes@v$KUBE_VERSION's go.mod."
    echo "module chaoslab.local/testenv/kube"
    echo
    grep -m1 '^go ' "$upstream"
    echo
    # godebug: single lines and blocks, verbatim.
    awk '/^godebug[[:space:]]*\(/{b=1} b||/^godebug[[:space:]]/{print} b&&/^\)/{b=0}' "$upstream"
    echo
    echo "tool ("
    printf '\tk8s.io/kubernetes/cmd/%s\n' "${kube_tools[@]}"
    echo ")"
    echo
    echo "require k8s.io/kubernetes v$KUBE_VERSION"
    echo
    echo "replace ("
    # "k8s.io/X => ./staging/src/k8s.io/X" (in a replace block or a single replace line)
    sed -n 's#^\(replace\)\{0,1\}[[:space:]]*\(k8s\.io/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\t\2 => \2 v'"$staging_version"'#p' "$upstream"
    # Any other replace that points at a published version applies to us too.
    published_replaces "$upstream"
    echo ")"
  } >"$dir/go.mod"
  local n
  n="$(grep -c "=> k8s.io/.* v$staging_version" "$dir/go.mod" || true)"
  [ "$n" -gt 0 ] || { log "found no staging replace directives in $upstream"; return 1; }
  log "generated $dir/go.mod ($n staging modules replaced with v$staging_version)"
  tidy "$dir" "kube-v$KUBE_VERSION" >&2
  echo "${kube_tools[*]}" >"$dir/.tidy-ok"
  echo "$dir"
}

# $1: one of kube_tools
build_kube() {
  local cmd="$1" out="$TESTENV_BIN/$1-v$KUBE_VERSION"
  local minor="${KUBE_VERSION#*.}"; minor="${minor%%.*}"
  local major="${KUBE_VERSION%%.*}"
  local dir
  dir="$(kube_module)"
  go_build "$dir" "$out" "$cmd v$KUBE_VERSION" \
    -ldflags "-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean" \
    "k8s.io/kubernetes/cmd/$cmd"
}

# ---- etcd ---------------------------------------------------------------------------
# go.etcd.io/etcd/server/v3 replaces its sibling modules with ../api etc.; those replaces
# are ignored in a dependency, so the helper module pins each of them to the same tag.
build_etcd() {
  local out="$ETCD_BIN" dir="$src_root/etcd-v$ETCD_VERSION" upstream
  if [ ! -f "$dir/.tidy-ok" ]; then
    upstream="$(gomod_of "go.etcd.io/etcd/server/v3@v$ETCD_VERSION")"
    mkdir -p "$dir"
    rm -f "$dir/go.sum"
    {
      echo "// Generated by hack/testenv/install.sh for go.etcd.io/etcd/server/v3@v$ETCD_VERSION."
      echo "module chaoslab.local/testenv/etcd"
      echo
      grep -m1 '^go ' "$upstream"
      echo
      echo "require go.etcd.io/etcd/server/v3 v$ETCD_VERSION"
      echo
      echo "replace ("
      # "go.etcd.io/etcd/api/v3 => ../api" -> pin to the published tag
      sed -n 's#^\(replace\)\{0,1\}[[:space:]]*\(go\.etcd\.io/etcd/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\.\./.*#\t\2 => \2 v'"$ETCD_VERSION"'#p' "$upstream"
      echo ")"
    } >"$dir/go.mod"
    cat >"$dir/main.go" <<'EOF'
// Generated by hack/testenv/install.sh: the etcd server binary, as etcd's own main.go.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
EOF
    log "generated $dir/go.mod ($(grep -c "=> go.etcd.io/.* v$ETCD_VERSION" "$dir/go.mod" || true) sibling modules pinned)"
    tidy "$dir" "etcd-v$ETCD_VERSION"
    touch "$dir/.tidy-ok"
  fi
  go_build "$dir" "$out" "etcd v$ETCD_VERSION" -ldflags "-s -w" .
}

# ---- prometheus ---------------------------------------------------------------------
# The version the vendored prometheus chart deploys, with Kubernetes service discovery (which
# Debian's prometheus package leaves out): the chart's own scrape jobs run as in a cluster.
# Prometheus 3.Y.Z is the Go module v0.3YY.Z; its go.mod has a replace of its own, so it is
# built from a helper module like etcd. No web UI assets (the API is all the tests use).
build_prometheus() {
  local out="$PROMETHEUS_BIN" dir="$src_root/prometheus-v$PROMETHEUS_VERSION" upstream
  local major="${PROMETHEUS_VERSION%%.*}" rest="${PROMETHEUS_VERSION#*.}"
  local modver; modver="v0.$major$(printf '%02d' "${rest%%.*}").${rest#*.}"
  if [ ! -f "$dir/.tidy-ok" ]; then
    upstream="$(gomod_of "github.com/prometheus/prometheus@$modver")"
    mkdir -p "$dir"
    rm -f "$dir/go.sum"
    {
      echo "// Generated by hack/testenv/install.sh for github.com/prometheus/prometheus@$modver."
      echo "module chaoslab.local/testenv/prometheus"
      echo
      grep -m1 '^go ' "$upstream"
      echo
      echo "tool github.com/prometheus/prometheus/cmd/prometheus"
      echo
      echo "require github.com/prometheus/prometheus $modver"
      echo
      echo "replace ("
      published_replaces "$upstream"
      echo ")"
    } >"$dir/go.mod"
    tidy "$dir" "prometheus-v$PROMETHEUS_VERSION"
    touch "$dir/.tidy-ok"
  fi
  go_build "$dir" "$out" "prometheus v$PROMETHEUS_VERSION" -tags "netgo,remove_all_sd,enable_kubernetes_sd" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION" \
    github.com/prometheus/prometheus/cmd/prometheus
}

# ---- the real node's images: coredns, prometheus-config-reloader, pause -----------------
# CoreDNS from a helper module whose main registers only the plugins the node's Corefile uses
# (coremain plus plugin imports, the way CoreDNS documents building a chosen plugin set): the
# full set pulls in every cloud SDK and would double the build.
build_coredns() {
  local out="$COREDNS_BIN" dir="$src_root/coredns-v$COREDNS_VERSION"
  if [ ! -f "$dir/.tidy-ok" ]; then
    gomod_of "github.com/coredns/coredns@v$COREDNS_VERSION" >/dev/null
    mkdir -p "$dir"
    rm -f "$dir/go.sum"
    printf '// Generated by hack/testenv/install.sh.\nmodule chaoslab.local/testenv/coredns\n\ngo 1.26.0\n\nrequire github.com/coredns/coredns v%s\n' \
      "$COREDNS_VERSION" >"$dir/go.mod"
    cat >"$dir/main.go" <<'EOF'
// Generated by hack/testenv/install.sh: CoreDNS with the plugins of the test node's Corefile,
// in CoreDNS's own plugin order (core/dnsserver/zdirectives.go).
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func init() {
	dnsserver.Directives = []string{"reload", "health", "ready", "prometheus", "errors", "log", "cache", "loadbalance", "kubernetes"}
}

func main() { coremain.Run() }
EOF
    tidy "$dir" "coredns-v$COREDNS_VERSION"
    touch "$dir/.tidy-ok"
  fi
  go_build "$dir" "$out" "coredns v$COREDNS_VERSION" -ldflags "-s -w" .
}

# prometheus-operator replaces two of its own submodules with local paths, ignored in a
# dependency: the helper module pins them to the same tag, as for etcd.
build_config_reloader() {
  local out="$CONFIG_RELOADER_BIN" dir="$src_root/prometheus-config-reloader-v$CONFIG_RELOADER_VERSION" upstream
  local mod=github.com/prometheus-operator/prometheus-operator
  if [ ! -f "$dir/.tidy-ok" ]; then
    upstream="$(gomod_of "$mod@v$CONFIG_RELOADER_VERSION")"
    mkdir -p "$dir"
    rm -f "$dir/go.sum"
    {
      echo "// Generated by hack/testenv/install.sh for $mod@v$CONFIG_RELOADER_VERSION."
      echo "module chaoslab.local/testenv/config-reloader"
      echo
      grep -m1 '^go ' "$upstream"
      echo
      echo "tool $mod/cmd/prometheus-config-reloader"
      echo
      echo "require $mod v$CONFIG_RELOADER_VERSION"
      echo
      echo "replace ("
      sed -n 's#^\(replace\)\{0,1\}[[:space:]]*\('"$mod"'/[^[:space:]]*\)[[:space:]]*=>[[:space:]]*\./.*#\t\2 => \2 v'"$CONFIG_RELOADER_VERSION"'#p' "$upstream"
      published_replaces "$upstream"
      echo ")"
    } >"$dir/go.mod"
    tidy "$dir" "prometheus-config-reloader-v$CONFIG_RELOADER_VERSION"
    touch "$dir/.tidy-ok"
  fi
  go_build "$dir" "$out" "prometheus-config-reloader v$CONFIG_RELOADER_VERSION" \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=$CONFIG_RELOADER_VERSION" \
    "$mod/cmd/prometheus-config-reloader"
}

# The pod sandbox's process: what Kubernetes' pause.c does (sleep until SIGINT or SIGTERM, reap
# orphans), written in Go because Kubernetes' C source is not a Go module.
build_pause() {
  local out="$PAUSE_BIN" dir="$src_root/pause"
  mkdir -p "$dir"
  printf '// Generated by hack/testenv/install.sh.\nmodule chaoslab.local/testenv/pause\n\ngo 1.26.0\n' >"$dir/go.mod"
  cat >"$dir/main.go" <<'EOF'
// Generated by hack/testenv/install.sh: the pod sandbox's pause process. It holds the pod's
// namespaces, exits 0 on SIGINT or SIGTERM, and reaps the zombies re-parented to it (PID 1).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var ws syscall.WaitStatus
			if pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
EOF
  go_build "$dir" "$out" "pause $PAUSE_VERSION" -ldflags "-s -w" .
}

# ---- helm, kwok: plain go install pkg@version (their go.mod files have no replaces) ---
build_helm() {
  local out="$HELM_BIN" upstream k8s_minor
  upstream="$(gomod_of "helm.sh/helm/v3@v$HELM_VERSION")"
  # As helm's Makefile: the default kube version helm assumes offline = its client-go + 1.0
  k8s_minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$upstream" | head -n1)"
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  if [ -n "$k8s_minor" ]; then
    ldflags="$ldflags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor"
    ldflags="$ldflags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor"
  fi
  go_install "$out" "helm v$HELM_VERSION" -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
}

# The node's CRI client: down.sh stops and removes every pod sandbox through it (CNI DEL, network
# namespaces, mounts), as kubeadm reset does.
build_crictl() {
  go_install "$CRICTL_BIN" "crictl v$CRICTL_VERSION" \
    -ldflags "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=v$CRICTL_VERSION" \
    "sigs.k8s.io/cri-tools/cmd/crictl@v$CRICTL_VERSION"
}

build_kwok() {
  go_install "$KWOK_BIN" "kwok v$KWOK_VERSION" \
    -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=v$KUBE_VERSION" \
    "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION"
}

# kwok does nothing without stages: take the stock ones from its module (kustomize/stage):
# nodes become Ready and keep a heartbeat lease; pods go Pending -> Running/Ready, complete,
# and are deleted, as a kubelet would report.
kwok_stages() {
  local json moddir st tmpf
  json="$(go mod download -json "sigs.k8s.io/kwok@v$KWOK_VERSION")"
  moddir="$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' <<<"$json")"
  st="$moddir/kustomize/stage"
  [ -d "$st" ] || { log "no kustomize/stage in $moddir"; return 1; }
  mkdir -p "$(dirname "$KWOK_STAGES")"
  tmpf="$KWOK_STAGES.tmp.$$"
  {
    echo "# Generated by hack/testenv/install.sh from sigs.k8s.io/kwok@v$KWOK_VERSION/kustomize/stage"
    local f
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/general/pod-create.yaml pod/general/pod-init-container-running.yaml \
             pod/general/pod-init-container-completed.yaml pod/general/pod-ready.yaml \
             pod/general/pod-complete.yaml pod/general/pod-delete.yaml; do
      [ -f "$st/$f" ] || { log "kwok stage $f not found in $st"; rm -f "$tmpf"; return 1; }
      echo "---"
      cat "$st/$f"
    done
  } >"$tmpf"
  mv -f "$tmpf" "$KWOK_STAGES"
}

# ---- main -----------------------------------------------------------------------------
wanted=("kube-apiserver|$KUBE_APISERVER_BIN|build_kube kube-apiserver"
        "etcd|$ETCD_BIN|build_etcd"
        "helm|$HELM_BIN|build_helm"
        "prometheus|$PROMETHEUS_BIN|build_prometheus")
if [ "$all" = 1 ]; then
  wanted+=("kube-controller-manager|$KUBE_CONTROLLER_MANAGER_BIN|build_kube kube-controller-manager"
           "kube-scheduler|$KUBE_SCHEDULER_BIN|build_kube kube-scheduler"
           "kwok|$KWOK_BIN|build_kwok"
           "kwok-stages|$KWOK_STAGES|kwok_stages")
fi

if [ "$node" = 1 ]; then
  wanted+=("kube-controller-manager|$KUBE_CONTROLLER_MANAGER_BIN|build_kube kube-controller-manager"
           "kube-scheduler|$KUBE_SCHEDULER_BIN|build_kube kube-scheduler"
           "kubelet|$KUBELET_BIN|build_kube kubelet"
           "kube-proxy|$KUBE_PROXY_BIN|build_kube kube-proxy"
           "coredns|$COREDNS_BIN|build_coredns"
           "prometheus-config-reloader|$CONFIG_RELOADER_BIN|build_config_reloader"
           "pause|$PAUSE_BIN|build_pause"
           "crictl|$CRICTL_BIN|build_crictl")
fi

present() { [ -f "$1" ] && { [[ "$1" == *.yaml ]] || [ -x "$1" ]; }; }

failed=()
for w in "${wanted[@]}"; do
  IFS='|' read -r name path fn <<<"$w"
  if present "$path"; then
    log "$name: present ($path)"
    continue
  fi
  start=$SECONDS
  # A subshell outside any if/&&/|| so that set -e applies inside the build function.
  set +e
  ( set -euo pipefail; $fn )
  rc=$?
  set -e
  if [ "$rc" -eq 0 ] && present "$path"; then
    log "$name: built in $((SECONDS - start)) s -> $path"
  else
    log "$name: BUILD FAILED after $((SECONDS - start)) s (exit $rc)"
    failed+=("$name")
  fi
done

log "summary (cache: $TESTENV_BIN):"
for w in "${wanted[@]}"; do
  IFS='|' read -r name path _ <<<"$w"
  if present "$path"; then
    printf '%-24s %s\n' "$name" "$path"
  else
    printf '%-24s MISSING (%s)\n' "$name" "$path"
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi

# shellcheck shell=bash disable=SC2034
# Shared settings for hack/testenv/*.sh. Sourced, not executed.
# Versions and the cache location are overridable from the environment.

KUBE_VERSION="${KUBE_VERSION:-1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
HELM_VERSION="${HELM_VERSION:-3.22.0}"
KWOK_VERSION="${KWOK_VERSION:-0.8.0}"
# The version the vendored prometheus chart deploys (its appVersion).
PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.14.0}"
# Accept "v1.36.3" as well as "1.36.3".
KUBE_VERSION="${KUBE_VERSION#v}"
ETCD_VERSION="${ETCD_VERSION#v}"
HELM_VERSION="${HELM_VERSION#v}"
KWOK_VERSION="${KWOK_VERSION#v}"
PROMETHEUS_VERSION="${PROMETHEUS_VERSION#v}"

CHAOSLAB_CACHE="${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}"
TESTENV_BIN="$CHAOSLAB_CACHE/bin"

KUBE_APISERVER_BIN="$TESTENV_BIN/kube-apiserver-v$KUBE_VERSION"
KUBE_CONTROLLER_MANAGER_BIN="$TESTENV_BIN/kube-controller-manager-v$KUBE_VERSION"
KUBE_SCHEDULER_BIN="$TESTENV_BIN/kube-scheduler-v$KUBE_VERSION"
ETCD_BIN="$TESTENV_BIN/etcd-v$ETCD_VERSION"
HELM_BIN="$TESTENV_BIN/helm-v$HELM_VERSION"
KWOK_BIN="$TESTENV_BIN/kwok-v$KWOK_VERSION"
PROMETHEUS_BIN="$TESTENV_BIN/prometheus-v$PROMETHEUS_VERSION"
# kwok's stage definitions (node ready + heartbeat, pod lifecycle), copied from its module.
KWOK_STAGES="$CHAOSLAB_CACHE/share/kwok-v$KWOK_VERSION/stages.yaml"

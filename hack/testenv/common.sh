# shellcheck shell=bash disable=SC2034
# Shared settings for hack/testenv/*.sh. Sourced, not executed.
# Versions (hack/versions.env) and the cache location are overridable from the environment.

# shellcheck source=../versions.sh
. "$(dirname "${BASH_SOURCE[0]}")/../versions.sh"

CHAOSLAB_CACHE="${CHAOSLAB_CACHE:-$HOME/.cache/chaoslab}"
TESTENV_BIN="$CHAOSLAB_CACHE/bin"

KUBE_APISERVER_BIN="$TESTENV_BIN/kube-apiserver-v$KUBE_VERSION"
KUBE_CONTROLLER_MANAGER_BIN="$TESTENV_BIN/kube-controller-manager-v$KUBE_VERSION"
KUBE_SCHEDULER_BIN="$TESTENV_BIN/kube-scheduler-v$KUBE_VERSION"
KUBELET_BIN="$TESTENV_BIN/kubelet-v$KUBE_VERSION"
KUBE_PROXY_BIN="$TESTENV_BIN/kube-proxy-v$KUBE_VERSION"
COREDNS_BIN="$TESTENV_BIN/coredns-v$COREDNS_VERSION"
CONFIG_RELOADER_BIN="$TESTENV_BIN/prometheus-config-reloader-v$CONFIG_RELOADER_VERSION"
PAUSE_BIN="$TESTENV_BIN/pause-$PAUSE_VERSION"
CRICTL_BIN="$TESTENV_BIN/crictl-v$CRICTL_VERSION"
ETCD_BIN="$TESTENV_BIN/etcd-v$ETCD_VERSION"
HELM_BIN="$TESTENV_BIN/helm-v$HELM_VERSION"
KWOK_BIN="$TESTENV_BIN/kwok-v$KWOK_VERSION"
PROMETHEUS_BIN="$TESTENV_BIN/prometheus-v$PROMETHEUS_VERSION"
# The real node's addresses (up.sh --node, node.sh), all inside 198.18.0.0/15, a range reserved
# for test networks: the node on 198.18.0.0/24, pods on 198.18.1.0/24, Services on 198.19.0.0/16.
TEST_RANGE=198.18.0.0/15
NODE_IP=198.18.0.1
POD_CIDR=198.18.1.0/24
POD_GATEWAY=198.18.1.1
SERVICE_CIDR=198.19.0.0/16
KUBERNETES_SERVICE_IP=198.19.0.1
DNS_IP=198.19.0.10
# kwok's stage definitions (node ready + heartbeat, pod lifecycle), copied from its module.
KWOK_STAGES="$CHAOSLAB_CACHE/share/kwok-v$KWOK_VERSION/stages.yaml"

# shellcheck shell=bash
# Sourced: sets the tool versions of hack/versions.env, each unless the environment already sets
# it (TOXIPROXY_VERSION=2.11.0 hack/install-toxiproxy.sh builds another), without a leading "v".
# Read line by line rather than sourced, which would override the environment.
load_versions() {
  local name version
  while IFS='=' read -r name version; do
    case "$name" in '' | '#'*) continue ;; esac
    version="${!name:-$version}"
    printf -v "$name" '%s' "${version#v}"
  done <"$(dirname "${BASH_SOURCE[0]}")/versions.env"
}
load_versions

#!/usr/bin/env bash
# Builds the operator and loadgen images without a container engine or Nix: cargo builds the
# binaries, this script lays each into a minimal root filesystem (the binary, the shared
# libraries it links, the CA certificates, a non-root user 65532, /tmp) and writes one image
# archive per binary (hack/lib/oci.sh), the form `kind load image-archive` reads.
#
#   hack/build-images.sh [--profile release|debug] [--out DIR] [--tag TAG]
#
# Defaults: --profile release, --out target/images, --tag the workspace version (the chart's
# appVersion), so `helm install` finds chaoslab/operator:<tag> and chaoslab/loadgen:<tag>.
# Prints the archives' paths on stdout. Same binaries in, same archives out (timestamps fixed).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
profile=release out="$root/target/images" tag=""
usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) profile="${2:?--profile needs release or debug}"; shift 2 ;;
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --tag) tag="${2:?--tag needs a value}"; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "build-images: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$profile" in release|debug) ;; *) echo "build-images: --profile must be release or debug, not $profile" >&2; exit 2 ;; esac
for tool in jq sha256sum tar ldd strip; do
  command -v "$tool" >/dev/null || { echo "build-images: $tool is needed (apt-get install jq coreutils tar libc-bin binutils)" >&2; exit 1; }
done
cacerts=/etc/ssl/certs/ca-certificates.crt
[ -f "$cacerts" ] || { echo "build-images: $cacerts is missing (apt-get install ca-certificates)" >&2; exit 1; }
[ -n "$tag" ] || tag="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)"
[ -n "$tag" ] || { echo "build-images: no version in $root/Cargo.toml; pass --tag" >&2; exit 1; }

flags=(--locked -p chaoslab-operator -p chaoslab-loadgen)
[ "$profile" = release ] && flags+=(--release)
echo "build-images: cargo build ${flags[*]}" >&2
(cd "$root" && cargo build -q "${flags[@]}")
bindir="$(cd "$root" && cargo metadata --format-version 1 --no-deps | jq -r .target_directory)/$profile"

mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# shellcheck source=lib/oci.sh
. "$root/hack/lib/oci.sh"

# $1 binary name, $2 image repository
image() {
  local bin="$1" repo="$2" rootfs="$work/$1/rootfs"
  mkdir -p "$rootfs"
  # Without debug info: what runs in the cluster is the same code, a fraction of the size.
  strip --strip-debug -o "$work/$bin.stripped" "$bindir/$bin"
  oci_copy_binary "$rootfs" "$work/$bin.stripped" "/usr/local/bin/$bin"
  # reqwest's TLS verifier loads the system's CA certificates and refuses to build a client without any.
  oci_base "$rootfs"
  local config archive="$out/${repo//\//-}-$tag.tar"
  config="$(jq -n --arg bin "/usr/local/bin/$bin" --arg ver "$tag" '{
      User: "65532:65532", Entrypoint: [$bin], WorkingDir: "/tmp", Env: ["PATH=/usr/local/bin"],
      Labels: {"org.opencontainers.image.source": "https://github.com/chaoslab/chaoslab",
               "org.opencontainers.image.version": $ver}}')"
  oci_archive "$rootfs" "$repo:$tag" "$config" "$archive"
  echo "build-images: $repo:$tag -> $archive ($(du -h "$archive" | cut -f1))" >&2
  echo "$archive"
}

image chaoslab-operator chaoslab/operator
image chaoslab-loadgen chaoslab/loadgen

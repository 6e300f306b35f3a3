#!/usr/bin/env bash
# Builds the operator and loadgen images without a container engine or Nix: cargo builds the
# binaries, this script lays each into a minimal root filesystem (the binary, the shared
# libraries it links, the CA certificates, a non-root user 65532, /tmp) and writes one image
# archive per binary holding both an OCI image layout (index.json) and Docker's manifest.json,
# the two forms `kind load image-archive` (containerd's import) reads.
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

# Writes blob $1 under the layout in $2 and prints "sha256:<hex> <size>".
blob() {
  local sum size
  sum="$(sha256sum "$1" | cut -d' ' -f1)"
  size="$(stat -c %s "$1")"
  mkdir -p "$2/blobs/sha256"
  cp "$1" "$2/blobs/sha256/$sum"
  echo "sha256:$sum $size"
}

# $1 binary name, $2 image repository
image() {
  local bin="$1" repo="$2" rootfs="$work/$1/rootfs" layout="$work/$1/layout"
  mkdir -p "$rootfs/usr/local/bin" "$rootfs/etc" "$rootfs/tmp" "$layout"
  # Without debug info: what runs in the cluster is the same code, a fraction of the size.
  strip --strip-debug -o "$rootfs/usr/local/bin/$bin" "$bindir/$bin"
  # The shared libraries it links, at the paths the dynamic loader looks for them.
  local lib
  for lib in $(ldd "$bindir/$bin" | grep -o '/[^ ]*'); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
  # reqwest's TLS verifier loads the system's CA certificates and refuses to build a client without any.
  mkdir -p "$rootfs/etc/ssl/certs"
  cp "$cacerts" "$rootfs/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  chmod 1777 "$rootfs/tmp"

  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/$bin/layer.tar" \
    $(cd "$rootfs" && ls -A)
  read -r layer layer_size < <(blob "$work/$bin/layer.tar" "$layout")
  jq -n --arg diff "$layer" --arg bin "/usr/local/bin/$bin" --arg ver "$tag" '{
      architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z",
      config: {User: "65532:65532", Entrypoint: [$bin], WorkingDir: "/tmp",
               Env: ["PATH=/usr/local/bin"],
               Labels: {"org.opencontainers.image.source": "https://github.com/chaoslab/chaoslab",
                        "org.opencontainers.image.version": $ver}},
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created: "1970-01-01T00:00:00Z", created_by: "hack/build-images.sh"}]}' >"$work/$bin/config.json"
  read -r config config_size < <(blob "$work/$bin/config.json" "$layout")
  jq -n --arg c "$config" --argjson cs "$config_size" --arg l "$layer" --argjson ls "$layer_size" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' >"$work/$bin/manifest.json"
  read -r manifest manifest_size < <(blob "$work/$bin/manifest.json" "$layout")
  jq -n --arg m "$manifest" --argjson ms "$manifest_size" --arg name "docker.io/$repo:$tag" --arg tag "$tag" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
                   platform: {architecture: "amd64", os: "linux"},
                   annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag}}]}' \
    >"$layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  jq -n --arg c "blobs/sha256/${config#sha256:}" --arg l "blobs/sha256/${layer#sha256:}" --arg t "$repo:$tag" \
    '[{Config: $c, RepoTags: [$t], Layers: [$l]}]' >"$layout/manifest.json"

  local archive="$out/${repo//\//-}-$tag.tar"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$layout" -cf "$archive.tmp" \
    oci-layout index.json manifest.json blobs
  mv -f "$archive.tmp" "$archive"
  echo "build-images: $repo:$tag -> $archive ($(du -h "$archive" | cut -f1))" >&2
  echo "$archive"
}

image chaoslab-operator chaoslab/operator
image chaoslab-loadgen chaoslab/loadgen

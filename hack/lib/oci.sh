# shellcheck shell=bash
# Sourced by hack/build-images.sh and hack/testenv/node-images.sh: builds one-layer container
# image archives from a root filesystem directory, with no container engine. Each archive holds
# both an OCI image layout (index.json) and Docker's manifest.json, the two forms
# `kind load image-archive` (containerd's import) and `docker load` read. Timestamps and owners
# are fixed, so the same files give byte-identical archives.
# Needs jq, sha256sum, tar, ldd.

# oci_copy_binary ROOTFS SRC DEST: SRC at ROOTFS/DEST, with the shared libraries it links at the
# paths the dynamic loader looks for them (nothing more for a static binary).
oci_copy_binary() {
  local rootfs="$1" src="$2" dest="$3" lib
  mkdir -p "$rootfs$(dirname "$dest")"
  cp -L "$src" "$rootfs$dest"
  chmod 0755 "$rootfs$dest"
  for lib in $(ldd "$src" 2>/dev/null | grep -o '/[^ ]*' || true); do
    mkdir -p "$rootfs$(dirname "$lib")"
    cp -L "$lib" "$rootfs$lib"
  done
}

# oci_base ROOTFS: what most images have besides their binary: /etc/passwd and /etc/group with
# root, nobody (65534) and nonroot (65532), nsswitch.conf, CA certificates, a world-writable /tmp.
oci_base() {
  local rootfs="$1"
  mkdir -p "$rootfs/etc/ssl/certs" "$rootfs/tmp"
  printf 'root:x:0:0:root:/:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/tmp:/sbin/nologin\n' \
    >"$rootfs/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$rootfs/etc/group"
  printf 'hosts: files dns\n' >"$rootfs/etc/nsswitch.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
  chmod 1777 "$rootfs/tmp"
}

# The name containerd records for REF: "redis:7.0" is docker.io/library/redis:7.0,
# "chaoslab/operator:0.1.0" is docker.io/chaoslab/operator:0.1.0, a name with a registry stays.
oci_full_name() {
  local first="${1%%/*}"
  if [ "$first" = "$1" ]; then
    echo "docker.io/library/$1"
  elif [[ "$first" == *.* || "$first" == *:* || "$first" == localhost ]]; then
    echo "$1"
  else
    echo "docker.io/$1"
  fi
}

# oci_archive ROOTFS REF CONFIG OUT: the archive OUT of ROOTFS as image REF ("repo:tag"), CONFIG
# the image config's "config" object as JSON (Entrypoint, Cmd, User, WorkingDir, Env, ...).
oci_archive() {
  local rootfs="$1" ref="$2" config="$3" out="$4" work blob_sum layer layer_size cfg cfg_size manifest manifest_size
  work="$(mktemp -d)"
  mkdir -p "$work/layout/blobs/sha256"
  blob_sum() { # $1 file: writes it as a blob, prints "sha256:<hex> <size>"
    local sum size
    sum="$(sha256sum "$1" | cut -d' ' -f1)"
    size="$(stat -c %s "$1")"
    cp "$1" "$work/layout/blobs/sha256/$sum"
    echo "sha256:$sum $size"
  }
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$rootfs" -cf "$work/layer.tar" \
    $(cd "$rootfs" && ls -A)
  read -r layer layer_size < <(blob_sum "$work/layer.tar")
  jq -n --arg diff "$layer" --argjson config "$config" '{
      architecture: "amd64", os: "linux", created: "1970-01-01T00:00:00Z", config: $config,
      rootfs: {type: "layers", diff_ids: [$diff]},
      history: [{created: "1970-01-01T00:00:00Z", created_by: "hack/lib/oci.sh"}]}' >"$work/config.json"
  read -r cfg cfg_size < <(blob_sum "$work/config.json")
  jq -n --arg c "$cfg" --argjson cs "$cfg_size" --arg l "$layer" --argjson ls "$layer_size" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $c, size: $cs},
      layers: [{mediaType: "application/vnd.oci.image.layer.v1.tar", digest: $l, size: $ls}]}' >"$work/manifest.json"
  read -r manifest manifest_size < <(blob_sum "$work/manifest.json")
  jq -n --arg m "$manifest" --argjson ms "$manifest_size" --arg name "$(oci_full_name "$ref")" --arg tag "${ref##*:}" '{
      schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [{mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $m, size: $ms,
                   platform: {architecture: "amd64", os: "linux"},
                   annotations: {"io.containerd.image.name": $name, "org.opencontainers.image.ref.name": $tag}}]}' \
    >"$work/layout/index.json"
  echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"
  jq -n --arg c "blobs/sha256/${cfg#sha256:}" --arg l "blobs/sha256/${layer#sha256:}" --arg t "$ref" \
    '[{Config: $c, RepoTags: [$t], Layers: [$l]}]' >"$work/layout/manifest.json"
  mkdir -p "$(dirname "$out")"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/layout" -cf "$out.tmp" \
    oci-layout index.json manifest.json blobs
  mv -f "$out.tmp" "$out"
  rm -rf "$work"
}

#!/usr/bin/env bash
# Build the step image with buildah (no Docker engine, no registry needed).
#   IMAGE=ghcr.io/ovro-lwa/orca-steps:0.1.0 BASE_IMAGE=localhost/orca-base:bookworm images/build.sh
# A BASE_IMAGE under localhost/ is made here with debootstrap (images/make-base.sh); any other is
# pulled. The build context holds only what pip needs: pyproject.toml, README.md, steps/, workflows/.
# Layers are cached, so a rebuild redoes only what changed. Storage is buildah's vfs driver (works
# anywhere, even inside a container), which keeps a full copy per layer: the images this build
# supersedes are deleted, so the cache holds one image chain, not one per build.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:?set IMAGE, e.g. ghcr.io/ovro-lwa/orca-steps:0.1.0}
base=${BASE_IMAGE:?set BASE_IMAGE, e.g. localhost/orca-base:bookworm}
cache=${IMAGE_CACHE:-build/image-cache}
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
builder_image=localhost/orca-steps-builder:cache  # tagged so that its layers stay cached
buildah=(buildah --storage-driver vfs)

for f in pyproject.toml README.md steps workflows; do
  [ -e "$f" ] || { echo "images/build.sh: $f is missing; the image needs it to install orca-argo" >&2; exit 1; }
done
case "$base" in localhost/*) images/make-base.sh "$base" "$cache" ;; esac

context="$cache/context"
rm -rf "$context" && mkdir -p "$context"
tar --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' -cf - \
  pyproject.toml README.md steps workflows | tar -C "$context" -xf -

image_id() { "${buildah[@]}" images --quiet --no-trunc "$1" 2>/dev/null || true; }
old_ids="$(image_id "$image") $(image_id "$builder_image")"
args=(--isolation chroot --layers --build-arg "BASE_IMAGE=$base" --build-arg "ORCA_VERSION=${image##*:}"
      -f images/Dockerfile)
[ -s "$ca" ] && args+=(--secret "id=pip-cert,src=$ca")
start=$(date +%s)
"${buildah[@]}" bud "${args[@]}" --target builder -t "$builder_image" "$context"
"${buildah[@]}" bud "${args[@]}" -t "$image" "$context"
seconds=$(( $(date +%s) - start ))

new_ids=" $(image_id "$image") $(image_id "$builder_image") "
for id in $old_ids; do
  case "$new_ids" in
    *" $id "*) ;;
    *) "${buildah[@]}" rmi "$id" >/dev/null && echo "removed superseded image ${id#sha256:}" \
         || echo "kept superseded image ${id#sha256:} (in use)" ;;
  esac
done
echo "built $image in $seconds s; size: $("${buildah[@]}" images --format '{{.Size}}' "$image")"

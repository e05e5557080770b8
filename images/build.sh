#!/usr/bin/env bash
# Build the step image with buildah (no Docker engine, no registry needed).
#   IMAGE=ghcr.io/ovro-lwa/orca-steps:0.1.0 BASE_IMAGE=localhost/orca-base:trixie images/build.sh
# A BASE_IMAGE under localhost/ is made here with debootstrap (images/make-base.sh); any other is
# pulled. The build context holds only what pip needs: pyproject.toml, README.md, steps/, workflows/.
# Storage is buildah's vfs driver (works anywhere, even inside a container). It keeps a full copy of
# the file system per layer, so caching layers costs more time and disk than rebuilding: every build
# is a full one, and the image it supersedes is deleted.
set -euo pipefail
cd "$(dirname "$0")/.."
image=${IMAGE:?set IMAGE, e.g. ghcr.io/ovro-lwa/orca-steps:0.1.0}
base=${BASE_IMAGE:?set BASE_IMAGE, e.g. localhost/orca-base:trixie}
cache=${IMAGE_CACHE:-build/image-cache}
ca=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}
buildah=(buildah --storage-driver vfs)

for f in pyproject.toml README.md steps workflows; do
  [ -e "$f" ] || { echo "images/build.sh: $f is missing; the image needs it to install orca-argo" >&2; exit 1; }
done
case "$base" in localhost/*) images/make-base.sh "$base" "$cache" ;; esac

context="$cache/context"
rm -rf "$context" && mkdir -p "$context"
tar --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' -cf - \
  pyproject.toml README.md steps workflows | tar -C "$context" -xf -

old_id=$("${buildah[@]}" images --quiet --no-trunc "$image" 2>/dev/null || true)
secret=()
[ -s "$ca" ] && secret=(--secret "id=pip-cert,src=$ca")
start=$(date +%s)
"${buildah[@]}" bud --isolation chroot --layers=false --build-arg "BASE_IMAGE=$base" \
  --build-arg "ORCA_VERSION=${image##*:}" "${secret[@]}" -f images/Dockerfile -t "$image" "$context"
seconds=$(( $(date +%s) - start ))
if [ -n "$old_id" ] && [ "$old_id" != "$("${buildah[@]}" images --quiet --no-trunc "$image")" ]; then
  "${buildah[@]}" rmi "$old_id" >/dev/null && echo "removed the superseded image ${old_id#sha256:}" \
    || echo "kept the superseded image ${old_id#sha256:} (in use)"
fi
echo "built $image in $seconds s; size: $("${buildah[@]}" images --format '{{.Size}}' "$image")"

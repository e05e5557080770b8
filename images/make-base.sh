#!/usr/bin/env bash
# Make a Debian base image without any registry: debootstrap a minimal root file system, tar it, and
# import it with `FROM scratch` + `ADD`. Used when docker.io is not reachable (CI here).
#   images/make-base.sh localhost/orca-base:trixie CACHE_DIR
# The image's tag names the Debian release. The tarball is cached in CACHE_DIR under the release's
# name, and an IMAGE already in buildah's storage is kept, so reruns cost nothing. Needs root,
# debootstrap and buildah.
set -euo pipefail
image=${1:?usage: make-base.sh IMAGE CACHE_DIR}
cache=${2:?usage: make-base.sh IMAGE CACHE_DIR}
release=${image##*:}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
buildah=(buildah --storage-driver vfs)

if "${buildah[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  echo "base image $image already built"
  exit 0
fi
mkdir -p "$cache"
tarball="$cache/$release-minbase.tar"
if [ ! -s "$tarball" ]; then
  root=$(mktemp -d "${TMPDIR:-/tmp}/orca-rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap --variant=minbase $release from $mirror"
  debootstrap --variant=minbase "$release" "$root" "$mirror" >"$cache/debootstrap-$release.log" 2>&1 \
    || { tail -20 "$cache/debootstrap-$release.log"; exit 1; }
  # Same apt sources as Debian's own images: the release, its updates and security fixes.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: $release $release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: $release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # Slim like Debian's -slim images: no caches, manuals, translations or documentation but the
  # copyright files.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
fi
printf 'FROM scratch\nADD %s /\nCMD ["/bin/bash"]\n' "$(basename "$tarball")" >"$cache/Containerfile.$release"
"${buildah[@]}" bud --isolation chroot --layers=false -f "$cache/Containerfile.$release" -t "$image" "$cache"

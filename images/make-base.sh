#!/usr/bin/env bash
# Make a Debian bookworm base image without any registry: debootstrap a minimal root file system,
# tar it, and import it with `FROM scratch` + `ADD`. Used when docker.io is not reachable (CI here).
#   images/make-base.sh IMAGE CACHE_DIR
# The tarball is cached in CACHE_DIR, and an IMAGE already in buildah's storage is kept, so reruns
# cost nothing. Needs root, debootstrap and buildah.
set -euo pipefail
image=${1:?usage: make-base.sh IMAGE CACHE_DIR}
cache=${2:?usage: make-base.sh IMAGE CACHE_DIR}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
buildah=(buildah --storage-driver vfs)

if "${buildah[@]}" inspect --type image "$image" >/dev/null 2>&1; then
  echo "base image $image already built"
  exit 0
fi
mkdir -p "$cache"
tarball="$cache/bookworm-minbase.tar"
if [ ! -s "$tarball" ]; then
  root=$(mktemp -d "${TMPDIR:-/tmp}/orca-rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo "debootstrap --variant=minbase bookworm from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log"; exit 1; }
  # Same apt sources as Debian's own images: the release, its updates and security fixes.
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<SOURCES
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  # Slim like Debian's bookworm-slim: no caches, manuals, translations or documentation but the
  # copyright files.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log \
    "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
  find "$root/usr/share/doc" -type f ! -name copyright -delete
  tar -C "$root" --numeric-owner --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
    -cf "$tarball.part" .
  mv "$tarball.part" "$tarball"
fi
printf 'FROM scratch\nADD %s /\nCMD ["/bin/bash"]\n' "$(basename "$tarball")" >"$cache/Containerfile.base"
"${buildah[@]}" bud --isolation chroot --layers=false -f "$cache/Containerfile.base" -t "$image" "$cache"

#!/usr/bin/env bash
# Smoke test of the step image: the real steps and tools run inside it, as its own user (uid 1000),
# with writable mounts only at /tmp and /work, as in a pod with a read-only root file system.
# Afterwards the container's root file system must be unchanged.
#   images/smoke.sh ghcr.io/ovro-lwa/orca-steps:0.1.0
set -euo pipefail
image=${1:?usage: images/smoke.sh IMAGE}
here=$(cd "$(dirname "$0")" && pwd)
buildah=(buildah --storage-driver vfs)

work=$(mktemp -d "${TMPDIR:-/tmp}/orca-smoke-work.XXXXXX")
scratch=$(mktemp -d "${TMPDIR:-/tmp}/orca-smoke-tmp.XXXXXX")
chown 1000:1000 "$work" "$scratch"
ctr=$("${buildah[@]}" from --pull-never "$image")
stamp=$(mktemp "${TMPDIR:-/tmp}/orca-smoke-stamp.XXXXXX")
cleanup() { "${buildah[@]}" rm "$ctr" >/dev/null; rm -rf "$work" "$scratch" "$stamp"; }
trap cleanup EXIT
root=$("${buildah[@]}" mount "$ctr")
sleep 1  # file times have a 1 s grain on some file systems: all the runs' writes are newer than $stamp

in_image() {
  "${buildah[@]}" run --isolation chroot --volume "$work:/work" --volume "$scratch:/tmp" \
    --volume "$here:/smoke:ro" "$ctr" -- "$@"
}
say() { echo "--- smoke: $*"; }

say "user, tools and orca-step --help"
in_image sh -c 'test "$(id -u)" = 1000 || { echo "runs as uid $(id -u), not 1000"; exit 1; }'
in_image sh -c 'for t in stdbuf wsclean aoflagger fpack funpack taql ffmpeg orca-step; do command -v $t >/dev/null || { echo "missing: $t"; exit 1; }; done'
in_image orca-step --help | grep apply-calibration
in_image python /smoke/smoke_check.py imports

say "casacore measures for Debian tools (CASARCFILES): sunrise and sunset at OVRO on 2025-06-15"
riset=$(in_image taql 'calc meas.riset("SUN", 2025-06-15, "OVRO_MMA")' 2>&1)
echo "$riset"
grep -q '15-Jun-2025/12:3' <<<"$riset" || { echo "taql cannot find the measures data"; exit 1; }
! grep -q SEVERE <<<"$riset" || { echo "casacore in the image logs SEVERE (out-of-date measures?)"; exit 1; }

say "simulate one MS"
in_image orca-step simulate --out_dir /work/sim --n_integrations 1
ms=$(cd "$work" && ls -d sim/input/73MHz/*/*/*_73MHz_averaged.ms)
[ -n "$ms" ] || { echo "simulate wrote no MS"; exit 1; }

say "copy and apply-calibration"
in_image orca-step copy --src_ms "/work/$ms" --nvme_work_dir /work/nvme
ms=/work/nvme/$(basename "$ms")
in_image orca-step apply-calibration --ms "$ms" \
  --bp_table /work/sim/refs/73MHz.bandpass.B.flagged --xy_table /work/sim/refs/73MHz.xyphase.Xf
in_image python /smoke/smoke_check.py flags "$ms" /work/flags-before-aoflagger.npy

say "WSClean dirty image, AOFlagger, fpack"
in_image mkdir /work/img
in_image wsclean -quiet -j 2 -size 256 256 -scale 0.5deg -niter 0 -pol I -data-column CORRECTED_DATA \
  -name /work/img/dirty "$ms"
in_image orca-step aoflagger --ms "$ms" --column CORRECTED_DATA --threads 2
in_image fpack /work/img/dirty-image.fits

say "orca's science recipe I-Deep-Taper-Robust-0 as written: -multiscale with -local-rms"
in_image orca-step science-images --ms "$ms" --work_dir /work/unit --subband 73MHz \
  --recipes I-Deep-Taper-Robust-0 --image_size 256 --image_scale_deg 0.5 --wsclean_threads 2 \
  --result-file /work/science.json >/dev/null
in_image python /smoke/smoke_check.py recipe /work/science.json I-Deep-Taper-Robust-0

say "check the outputs"
in_image python /smoke/smoke_check.py outputs "$ms" /work/flags-before-aoflagger.npy \
  /work/img/dirty-image.fits /work/img/dirty-image.fits.fz /work/img/plot.png

say "nothing written to the root file system"
# Allowed: the root itself, the mount points buildah creates, and /run (buildah's own files).
changed=$(cd "$root" && find . -xdev -newer "$stamp" ! -path . ! -path ./work ! -path ./smoke ! -path ./run)
if [ -n "$changed" ]; then echo "written outside /tmp and /work:"; echo "$changed"; exit 1; fi
say "passed: $image"

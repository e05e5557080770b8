"""Our imaging makes orca's images: each recipe as our steps run it against orca's own WSClean command
line (written out here from orca's code, not taken from our recipes) on the same small hour.

Both ways use the same gridder (ours, ``wsclean.SPEEDUPS``): how far the gridder moves the images from
WSClean's default is measured by bench/phase2_orca.py; this test pins the arguments, so dropping or
changing one that changes an image fails it.
"""
import re
import shlex
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from orca_steps import wsclean
from orca_steps.tools import run_tool
from orca_steps.wsclean import PILOT_SNAPSHOT, SCIENCE_RECIPES, SPEEDUPS, gridder_args, image_recipe, stamp_images
from phase2_data import prepared_concat

SIZE, SCALE_DEG, THREADS = 128, 1.0, 2  # the whole sky, coarsely: fast
SHARED_I = ("-pol I -multiscale -multiscale-scale-bias 0.8 -mgain 0.95 -horizon-mask 10deg -auto-threshold 0.5 "
            "-auto-mask 3 -local-rms -no-update-model-required -mem 50")
STOKES_V = ("-pol V -niter 0 -horizon-mask 10deg -taper-inner-tukey 30 -weight briggs 0 -no-dirty "
            "-no-update-model-required -mem 50")
ORCA = {  # recipe -> orca's arguments
    "Pilot-Snapshot": "-pol IV -niter 0 -taper-inner-tukey 30 -weight briggs 0 -no-dirty -make-psf "
                      "-no-update-model-required -mem 20",
    "I-Deep-Taper-Robust-0.75": f"{SHARED_I} -niter 500000 -taper-inner-tukey 30 -weight briggs -0.75",
    "I-Deep-Taper-Robust-0": f"{SHARED_I} -niter 500000 -taper-inner-tukey 30 -weight briggs 0",
    "I-Deep-NoTaper-Robust-0.75": f"{SHARED_I} -niter 150000 -weight briggs -0.75",
    "I-Deep-NoTaper-Robust-0": f"{SHARED_I} -niter 150000 -weight briggs 0",
    "I-Taper-10min": f"{SHARED_I} -niter 50000 -taper-inner-tukey 30 -weight briggs 0 -intervals-out 6",
    "V-Taper-Deep": STOKES_V,
    "V-Taper-10min": f"{STOKES_V} -intervals-out 6",
}
RECIPES = {r.suffix: r for r in (PILOT_SNAPSHOT, *SCIENCE_RECIPES)}
TOLERANCE = 1e-3  # of each product's peak


@lru_cache(maxsize=None)
def small_hour(root: Path) -> Path:
    ms, _, _ = prepared_concat(root, n_antennas=32, n_integrations=6)
    return ms


@pytest.fixture(scope="module")
def hour(tmp_path_factory) -> Path:
    return small_hour(tmp_path_factory.mktemp("orca-way"))


def orca_images(suffix: str, ms: Path, out: Path) -> list[Path]:
    """orca's call (plus our gridder), its images named as ours are."""
    args = ORCA[suffix]
    if suffix == "Pilot-Snapshot":
        args += " -intervals-out 6"
    if wsclean.wsclean_version().startswith("3.1") and "-multiscale" in args:
        # WSClean 3.1 aborts on -multiscale with -local-rms; it cleans single-scale (wsclean.adapt_to_version)
        args = args.replace(" -multiscale -multiscale-scale-bias 0.8", "")
    prefix = out / f"73MHz-{suffix}"
    out.mkdir(parents=True)
    run_tool(["wsclean", *shlex.split(args), "-size", SIZE, SIZE, "-scale", SCALE_DEG, "-j", THREADS,
              *gridder_args(SPEEDUPS.get("gridder"), wsclean.wsclean_version()), "-name", prefix, ms],
             log_file=out / "wsclean.log")
    return stamp_images(prefix, ms, int(m.group(1)) if (m := re.search(r"-intervals-out (\d+)", args)) else 1)


def sky(header) -> np.ndarray:
    """Pixels above 10 degrees of elevation (orca's horizon mask; PB correction blanks the rest)."""
    n = header["NAXIS1"]
    lm = np.deg2rad((np.arange(n) + 1 - header["CRPIX1"]) * header["CDELT1"])
    return lm[None, :] ** 2 + lm[:, None] ** 2 < np.cos(np.deg2rad(10)) ** 2


@pytest.mark.parametrize("suffix", list(ORCA))
def test_our_recipe_makes_orcas_images(suffix, hour, tmp_path):
    recipe = RECIPES[suffix]
    intervals = 6 if recipe is PILOT_SNAPSHOT else None
    ours = image_recipe(recipe, hour, tmp_path / "ours", "73MHz", SIZE, SCALE_DEG, THREADS, intervals_out=intervals)
    theirs = orca_images(suffix, hour, tmp_path / "orca")
    assert sorted(Path(p).name for p in ours.images) == sorted(p.name for p in theirs)
    assert len(theirs) >= 2  # at least an image and a PSF
    for orca_path in theirs:
        with fits.open(orca_path) as a, fits.open(Path(ours.images[0]).parent / orca_path.name) as b:
            inside = sky(a[0].header)
            x, y = a[0].data[0, 0][inside], b[0].data[0, 0][inside]
        assert np.nanmax(np.abs(y - x)) <= TOLERANCE * np.nanmax(np.abs(x)), orca_path.name

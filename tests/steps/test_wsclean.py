"""The WSClean wrapper: orca's recipes as arguments the installed WSClean accepts, geometry from the pixel
tiers, and interval images named by the UTC mid-time of exactly the integrations WSClean put in them."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from orca_steps import wsclean
from orca_steps.snapshot_qa import ms_times
from orca_steps.wsclean import (CLEAN_SNAPSHOT, PILOT_SNAPSHOT, SCIENCE_RECIPES, SPEEDUPS, Recipe, WSCleanOptions,
                                adapt_to_version, image_geometry, image_recipe, interval_bounds, utc_of)
from phase2_data import prepared_concat

SHARED_I = ["-pol", "I", "-multiscale", "-multiscale-scale-bias", "0.8", "-mgain", "0.95", "-horizon-mask", "10deg",
            "-auto-threshold", "0.5", "-auto-mask", "3", "-local-rms", "-no-update-model-required"]


def pairs(args: list[str]) -> set[tuple[str, ...]]:
    """Each flag with the values that follow it, e.g. ('-weight', 'briggs', '0')."""
    out, current = set(), None
    for a in args:
        if a.startswith("-") and not a.lstrip("-").replace(".", "").isdigit():
            if current:
                out.add(tuple(current))
            current = [a]
        else:
            current.append(a)
    out.add(tuple(current))
    return out


def test_pilot_recipe_is_orcas():
    args = pairs(PILOT_SNAPSHOT.options.args())
    for expected in [("-pol", "IV"), ("-niter", "0"), ("-taper-inner-tukey", "30"), ("-weight", "briggs", "0"),
                     ("-no-dirty",), ("-make-psf",), ("-no-update-model-required",)]:
        assert expected in args


def test_science_recipes_share_orcas_arguments():
    assert len(SCIENCE_RECIPES) == 7
    stokes_i = [r for r in SCIENCE_RECIPES if r.options.pol == "I"]
    assert len(stokes_i) == 5
    for recipe in stokes_i:
        assert pairs(SHARED_I) <= pairs(recipe.options.args()), recipe.suffix
    deep = {(r.options.taper_inner_tukey, r.options.robust) for r in stokes_i if r.folder == "I/deep"}
    assert deep == {(30, -0.75), (30, 0), (None, -0.75), (None, 0)}  # taper/no taper x briggs -0.75/0
    ten = [r for r in SCIENCE_RECIPES if r.folder.endswith("10min")]
    assert {r.options.pol for r in ten} == {"I", "V"} and all(r.options.intervals_out == 6 for r in ten)
    for recipe in SCIENCE_RECIPES:
        if recipe.options.pol == "V":
            assert recipe.options.niter == 0 and recipe.folder.startswith("V/")
    assert ("-nmiter", "2") in pairs(CLEAN_SNAPSHOT.options.args())


@pytest.mark.parametrize("recipe", [PILOT_SNAPSHOT, CLEAN_SNAPSHOT, *SCIENCE_RECIPES], ids=lambda r: r.suffix)
def test_installed_wsclean_accepts_every_recipe(recipe, tmp_path):
    options, _ = adapt_to_version(recipe.options, wsclean.wsclean_version())
    options = options.model_copy(update={"name": str(tmp_path / "x"), "size": 64, "scale_deg": 1.0, "threads": 1,
                                         **SPEEDUPS})
    proc = subprocess.run(["wsclean", "-dry-run", *options.args(wsclean.wsclean_version()), str(tmp_path / "none.ms")],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-500:]
    rejected = subprocess.run(["wsclean", "-dry-run", "-no-such-option", str(tmp_path / "none.ms")],
                              capture_output=True, text=True)
    assert rejected.returncode != 0  # the dry run does check arguments


def test_wsclean_31_cannot_combine_multiscale_and_local_rms():
    opts = WSCleanOptions(multiscale=True, local_rms=True)
    adapted, notes = adapt_to_version(opts, "3.1.0")
    assert not adapted.local_rms and adapted.multiscale and notes
    kept, notes = adapt_to_version(opts, "3.4")
    assert kept.local_rms and not notes
    single, notes = adapt_to_version(WSCleanOptions(local_rms=True), "3.1.0")
    assert single.local_rms and not notes


def test_gridder_is_spelled_as_each_version_knows_it():
    opts = WSCleanOptions(gridder="wgridder")
    assert "-use-wgridder" in opts.args("3.1.0") and "-gridder" not in opts.args("3.1.0")
    assert ("-gridder", "wgridder") in pairs(opts.args("3.6.0"))
    assert "-use-wgridder" not in opts.args("3.6.0")
    assert not {"-gridder", "-use-wgridder"} & set(WSCleanOptions().args("3.6.0"))  # WSClean's default


def test_geometry_from_pixel_tiers(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCA_CONFIG", raising=False)
    assert image_geometry("18MHz", reduced=True) == (1024, 0.125)
    assert image_geometry("50MHz", reduced=True) == (2048, 0.0625)
    assert image_geometry("73MHz", reduced=True) == (4096, 0.03125)
    assert image_geometry("18MHz", reduced=False) == (4096, 0.03125)  # finest tier: same field of view
    assert image_geometry("73MHz", reduced=False, size=256, scale_deg=0.5) == (256, 0.5)
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"pixel_tiers": "wide116"}))
    monkeypatch.setenv("ORCA_CONFIG", str(site))
    size, scale = image_geometry("41MHz", reduced=True)
    assert size == 2357 and size * scale == pytest.approx(116.0)
    assert image_geometry("18MHz", reduced=False)[0] == 3122


def test_interval_bounds_cover_every_timestep_once():
    for n_times, n_int in [(358, 6), (5, 2), (6, 6), (7, 3)]:
        bounds = interval_bounds(n_times, n_int)
        assert bounds[0][0] == 0 and bounds[-1][1] == n_times
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert max(b - a for a, b in bounds) - min(b - a for a, b in bounds) <= 1


@pytest.fixture(scope="module")
def five_integrations(tmp_path_factory):
    ms, _, _ = prepared_concat(tmp_path_factory.mktemp("five"), n_antennas=8, n_integrations=5)
    return ms


def test_interval_names_carry_the_mid_time_of_the_integrations_wsclean_used(five_integrations, tmp_path):
    """5 integrations in 2 intervals: WSClean's own DATE-OBS shows which ones it took; the name is their
    mid-time, also written as DATE-AVG."""
    recipe = Recipe(suffix="Test", folder="out", options=PILOT_SNAPSHOT.options.model_copy(update={"mem_percent": None}))
    run = image_recipe(recipe, five_integrations, tmp_path, "73MHz", 64, 2.0, threads=1, intervals_out=2)
    times, _ = ms_times(five_integrations)
    images = sorted(p for p in map(Path, run.images) if p.name.endswith("-I-image.fits"))
    assert len(images) == 2
    for image, (a, b) in zip(images, interval_bounds(len(times), 2)):
        mid = (times[a] + times[b - 1]) / 2
        assert f"-{utc_of(round(mid)):%Y%m%d_%H%M%S}-I-image.fits" in image.name
        header = fits.getheader(image)
        first = np.datetime64(header["DATE-OBS"])
        assert abs(first - np.datetime64(utc_of(times[a]).replace(tzinfo=None))) < np.timedelta64(200, "ms")
        assert abs(np.datetime64(header["DATE-AVG"]) - np.datetime64(utc_of(mid).replace(tzinfo=None))) \
            < np.timedelta64(2, "ms")
    assert not list(tmp_path.glob("out/*-t0*"))  # nothing left with WSClean's interval index
    again = image_recipe(recipe, five_integrations, tmp_path, "73MHz", 64, 2.0, threads=1, intervals_out=2)
    assert sorted(again.images) == sorted(run.images)  # a re-run replaces its images, adds none
    assert sorted(map(str, (tmp_path / "out").glob("*.fits"))) == sorted(run.images)


def test_single_interval_is_stamped_with_the_hour_mid_time(five_integrations, tmp_path):
    recipe = Recipe(suffix="Deep", folder="deep", options=SCIENCE_RECIPES[-2].options.model_copy(
        update={"mem_percent": None}))  # V deep: no clean, quick
    run = image_recipe(recipe, five_integrations, tmp_path, "73MHz", 64, 2.0, threads=1)
    times, _ = ms_times(five_integrations)
    stamp = f"{utc_of(round((times[0] + times[-1]) / 2)):%Y%m%d_%H%M%S}"
    assert [Path(p).name for p in run.images if p.endswith("-image.fits")] == [f"73MHz-Deep-{stamp}-image.fits"]


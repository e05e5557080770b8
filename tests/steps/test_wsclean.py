"""The WSClean wrapper: orca's recipes as arguments the installed WSClean accepts, geometry from the pixel
tiers, and interval images named by the UTC mid-time of exactly the integrations WSClean put in them."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from astropy.io import fits

from orca_steps import wsclean
from orca_steps.constants import utc_of
from orca_steps.errors import InputError, ToolStoppedError
from orca_steps.snapshot_qa import ms_times
from orca_steps.wsclean import (CLEAN_SNAPSHOT, PILOT_SNAPSHOT, SCIENCE_RECIPES, SPEEDUPS, DivergenceWatch, Recipe,
                                Recipes, WSCleanOptions, adapt_to_version, image_geometry, image_recipe,
                                interval_bounds, site_recipes)
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
    adapted, changes = adapt_to_version(opts.model_copy(update={"multiscale_scale_bias": 0.8}), "3.1.0")
    assert adapted.local_rms and not adapted.multiscale and adapted.multiscale_scale_bias is None
    assert changes == ["wsclean 3.1.0: -multiscale dropped, single-scale clean (3.1 aborts on -multiscale with "
                       "-local-rms)"]
    kept, changes = adapt_to_version(opts, "3.4")
    assert kept.local_rms and not changes
    single, changes = adapt_to_version(WSCleanOptions(local_rms=True), "3.1.0")
    assert single.local_rms and not changes


# orca's seven science runs, argument by argument (FACTS.md, Phase 2 step 8; the seed's recipes): what a
# WSClean that supports them (3.6, the step image's) must be given, -local-rms included.
ORCA_SCIENCE = {
    "I-Deep-Taper-Robust-0.75": ["-niter", "500000", "-taper-inner-tukey", "30", "-weight", "briggs", "-0.75"],
    "I-Deep-Taper-Robust-0": ["-niter", "500000", "-taper-inner-tukey", "30", "-weight", "briggs", "0"],
    "I-Deep-NoTaper-Robust-0.75": ["-niter", "150000", "-weight", "briggs", "-0.75"],
    "I-Deep-NoTaper-Robust-0": ["-niter", "150000", "-weight", "briggs", "0"],
    "I-Taper-10min": ["-niter", "50000", "-taper-inner-tukey", "30", "-weight", "briggs", "0", "-intervals-out", "6"],
    "V-Taper-Deep": ["-pol", "V", "-niter", "0", "-horizon-mask", "10deg", "-taper-inner-tukey", "30", "-weight",
                     "briggs", "0", "-no-dirty", "-no-update-model-required"],
    "V-Taper-10min": ["-pol", "V", "-niter", "0", "-horizon-mask", "10deg", "-taper-inner-tukey", "30", "-weight",
                      "briggs", "0", "-no-dirty", "-no-update-model-required", "-intervals-out", "6"],
}
RUN_SETTINGS = ["-log-time", "-mem", "50"]  # this project's: timestamps in the log, half the node's memory


@pytest.mark.parametrize("version", ["3.6", "3.4"])
def test_a_wsclean_that_supports_them_gets_orcas_recipes_exactly(version):
    assert [r.suffix for r in SCIENCE_RECIPES] == list(ORCA_SCIENCE)
    for recipe in SCIENCE_RECIPES:
        adapted, changes = adapt_to_version(recipe.options, version)
        assert changes == [], recipe.suffix
        own = ORCA_SCIENCE[recipe.suffix]
        expected = RUN_SETTINGS + (own if recipe.options.pol == "V" else SHARED_I + own)
        assert pairs(adapted.args()) == pairs(expected), recipe.suffix
        assert len(adapted.args()) == len(expected), recipe.suffix


def test_wsclean_31_changes_only_the_multiscale_recipes_and_says_so():
    """3.1 cannot run -multiscale with -local-rms: the five multi-scale science recipes become single-scale,
    keeping -local-rms (without it they diverged on the simulated hours, see adapt_to_version)."""
    changed = {}
    for recipe in [PILOT_SNAPSHOT, CLEAN_SNAPSHOT, *SCIENCE_RECIPES]:
        adapted, changes = adapt_to_version(recipe.options, "3.1.0")
        dropped = pairs(recipe.options.args()) - pairs(adapted.args())
        assert (dropped == {("-multiscale",), ("-multiscale-scale-bias", "0.8")}) == bool(changes), recipe.suffix
        assert pairs(adapted.args()) <= pairs(recipe.options.args())  # nothing added
        if changes:
            changed[recipe.suffix] = changes
    assert list(changed) == ["I-Deep-Taper-Robust-0.75", "I-Deep-Taper-Robust-0", "I-Deep-NoTaper-Robust-0.75",
                             "I-Deep-NoTaper-Robust-0", "I-Taper-10min"]


def test_the_recipes_are_site_data(tmp_path, monkeypatch):
    """Without a site file the recipes are orca's; a site file changes them (and the pixel tiers) without code,
    and what it cannot mean is refused naming the file."""
    monkeypatch.delenv("ORCA_CONFIG", raising=False)
    assert site_recipes() == Recipes(pilot_snapshot=PILOT_SNAPSHOT, clean_snapshot=CLEAN_SNAPSHOT,
                                     science=list(SCIENCE_RECIPES))
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({
        "pixel_tiers": [{"max_mhz": 90, "size": 300, "scale_deg": 0.4}],
        "wsclean_recipes": {"clean_snapshot": {**CLEAN_SNAPSHOT.model_dump(exclude_none=True),
                                               "options": {"pol": "I", "niter": 10, "nmiter": 1}},
                            "science": [{"suffix": "I-Quick", "folder": "I/quick",
                                         "options": {"pol": "I", "niter": 100, "local_rms": True}}]}}))
    monkeypatch.setenv("ORCA_CONFIG", str(site))
    recipes = site_recipes()
    assert [r.suffix for r in recipes.science] == ["I-Quick"] and recipes.pilot_snapshot == PILOT_SNAPSHOT
    assert ("-niter", "10") in pairs(recipes.clean_snapshot.options.args())
    assert image_geometry("18MHz", reduced=True) == (300, 0.4)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"wsclean_recipes": {"science": [{"suffix": "x", "folder": "x",
                                                                     "options": {"no_such_argument": 1}}]}}))
    monkeypatch.setenv("ORCA_CONFIG", str(bad))
    with pytest.raises(InputError, match=r"(?s)bad\.yaml: site configuration is invalid.*no_such_argument"):
        site_recipes()


def test_the_science_step_runs_the_sites_recipes(five_integrations, tmp_path, monkeypatch):
    """A site whose only science recipe is a quick Stokes V one: the step runs that, with its arguments."""
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"wsclean_recipes": {"science": [
        {"suffix": "V-Site", "folder": "V/site", "options": {"pol": "V", "niter": 0, "robust": 0.5}}]}}))
    monkeypatch.setenv("ORCA_CONFIG", str(site))
    from orca_steps.science_images import science_images

    result = science_images(five_integrations, tmp_path / "unit", "73MHz", 64, 2.0, threads=1)
    assert list(result.images) == ["V-Site"] and result.recipe_changes == []
    image = next(p for p in result.images["V-Site"] if p.endswith("-image.fits"))
    assert "/V/site/73MHz-V-Site-" in image
    assert "-weight briggs 0.5" in "".join(str(h) for h in fits.getheader(image)["HISTORY"])


# --- A diverging clean is stopped --------------------------------------------------------------------
# Recorded here from WSClean 3.1 (Debian 12): orca's recipe I-Deep-Taper-Robust-0 (without -local-rms, as 3.1
# must run it) on an 8-antenna simulated hour. The peak starts at 1.27 KJy, swings around a few hundred Jy,
# and runs off to 2.6e23 KJy by the end of the second major iteration: a diverging clean. (Lines kept verbatim,
# some left out.)
RECORDED_31 = """\
2026-Dec-06 08:28:29.844784  == Deconvolving (1) ==
2026-Dec-06 08:28:29.875286 RMS per scale: {0: 144.47 Jy, 11: 8.19 Jy, 22: 1.96 Jy, 44: 644.42 mJy, 88: 269.12 mJy}
2026-Dec-06 08:28:29.875341 Starting multi-scale cleaning. Start peak=1.27 KJy, major iteration threshold=282.16 Jy (final)
2026-Dec-06 08:28:29.896542 Iteration 7, scale 0 px : 990.54 Jy at 47,187
2026-Dec-06 08:28:29.908673 Iteration 25, scale 0 px : -774.43 Jy at 48,174
2026-Dec-06 08:28:29.962755 Iteration 2162, scale 0 px : 694.31 Jy at 200,175
2026-Dec-06 08:28:30.433809 Iteration 242357, scale 0 px : 0 Jy at 256,256
2026-Dec-06 08:28:30.657853  == Deconvolving (2) ==
2026-Dec-06 08:28:30.678586 Starting multi-scale cleaning. Start peak=1.27 KJy, major iteration threshold=63.65 Jy
2026-Dec-06 08:28:30.681661 Iteration 242364, scale 0 px : 990.54 Jy at 47,187
2026-Dec-06 08:28:30.685726 Iteration 242382, scale 0 px : -774.43 Jy at 48,174
2026-Dec-06 08:28:30.836534 Iteration 244128, scale 0 px : -559.98 Jy at 226,179
"""
RECORDED_31_END = "2026-Dec-06 08:28:31.036238 Iteration 500000, scale 0 px : 2.55073e+23 KJy at 29,171"


def watch_lines(lines: list[str], recipe: str = "R") -> tuple[int | None, str | None]:
    """(index of the line that stops the clean, the reason), or (None, None)."""
    watch = DivergenceWatch(recipe)
    for k, line in enumerate(lines):
        if reason := watch(line):
            return k, reason
    return None, None


def test_divergence_rule_on_recorded_wsclean_output():
    lines = RECORDED_31.splitlines()
    assert watch_lines(lines) == (None, None)  # a bright (kJy) sky and a clean swinging around it: no stop
    k, reason = watch_lines(lines + [RECORDED_31_END], "I-Deep-Taper-Robust-0")
    assert k == len(lines)
    assert reason == ("the clean of recipe I-Deep-Taper-Robust-0 diverged: peak 2.55073e+23 KJy, more than 100 "
                      f"times the starting peak 1270 Jy, in: {RECORDED_31_END}")
    # Recorded from WSClean 3.1 single-scale clean with -gain 3, and WSClean's own warning (radler, WSClean
    # >= 3.2; its source, not run here): both stop at once.
    nan = ["2026-Dec-06 08:12:00.323432 Initial peak: 1.35 KJy at 48,187",
           "2026-Dec-06 08:12:00.367674 Stopped on peak -nan Jy, because the threshold was reached."]
    assert watch_lines(nan)[0] == 1 and "peak -nan Jy (not a number)" in watch_lines(nan)[1]
    assert watch_lines(["WARNING: Stopping clean because of divergence!"])[0] == 0
    # The reference is the first major iteration's start: a later one that starts far above it has diverged.
    majors = [" == Deconvolving (1) ==", "Initial peak: 2 Jy at 1,1", "Stopped on peak 150 mJy, because x",
              " == Deconvolving (2) ==", "Initial peak: 190 Jy at 1,1", " == Deconvolving (3) ==",
              "Initial peak: 201 Jy at 1,1"]
    assert watch_lines(majors)[0] == 6


def test_a_diverging_clean_is_stopped_with_an_error_naming_the_recipe(five_integrations, tmp_path):
    """Real WSClean: a minor-loop gain of 3 overshoots every component, the peak turns NaN; the clean is
    stopped before it writes a restored image, and the error names the recipe and what WSClean printed."""
    recipe = Recipe(suffix="Gain-3", folder="div", options=WSCleanOptions(pol="I", niter=1000000, gain=3,
                                                                           mgain=0.8, robust=0))
    with pytest.raises(ToolStoppedError) as caught:
        image_recipe(recipe, five_integrations, tmp_path, "73MHz", 512, 0.125, threads=1)
    message = str(caught.value)
    assert message.startswith("wsclean stopped: the clean of recipe Gain-3 diverged: peak -nan Jy (not a number)")
    assert f"full output in {tmp_path / 'logs' / 'wsclean.log'}" in message and "\n" not in message
    assert "Stopped on peak -nan Jy" in (tmp_path / "logs" / "wsclean.log").read_text()
    assert (tmp_path / "div" / "73MHz-Gain-3-dirty.fits").is_file()  # it ran, and was stopped before the end:
    assert not list((tmp_path / "div").glob("*-image.fits"))
    assert ToolStoppedError.exit_code == 2  # a rerun would diverge again: not retried


def test_gridder_is_spelled_as_each_version_knows_it():
    opts = WSCleanOptions(gridder="wgridder")
    assert "-use-wgridder" in opts.args("3.1.0") and "-gridder" not in opts.args("3.1.0")
    assert ("-gridder", "wgridder") in pairs(opts.args("3.6.0"))
    assert "-use-wgridder" not in opts.args("3.6.0")
    assert not {"-gridder", "-use-wgridder"} & set(WSCleanOptions().args("3.6.0"))  # WSClean's default
    accurate = WSCleanOptions(gridder="wgridder", wgridder_accuracy=1e-6)
    assert ("-wgridder-accuracy", "1e-06") in pairs(accurate.args("3.1.0"))
    assert "-wgridder-accuracy" not in WSCleanOptions(gridder="wgridder").args("3.6.0")


def test_geometry_from_pixel_tiers(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCA_CONFIG", raising=False)
    assert image_geometry("18MHz", reduced=True) == (1024, 0.125)
    assert image_geometry("50MHz", reduced=True) == (2048, 0.0625)
    assert image_geometry("73MHz", reduced=True) == (4096, 0.03125)
    assert image_geometry("18MHz", reduced=False) == (4096, 0.03125)  # finest tier: same field of view
    assert image_geometry("73MHz", reduced=False, size=256, scale_deg=0.5) == (256, 0.5)
    site = tmp_path / "site.json"  # newer orca's tiers: a ~116 degree field
    site.write_text(json.dumps({"pixel_tiers": [{"max_mhz": m, "size": n, "scale_deg": 116 / n}
                                                for m, n in [(36, 1507), (59, 2357), (90, 3122)]]}))
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


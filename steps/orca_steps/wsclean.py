"""WSClean: the one place that knows its options, orca's imaging recipes, and its output names.

``WSCleanOptions`` mirrors WSClean's command-line arguments (one field per argument, WSClean's name in
the description); a ``Recipe`` is a named, partly filled options object plus the folder its images go to.
The pilot-snapshot, clean-snapshot and the 7 science recipes below are orca's, as data: the defaults of
the site's recipes (``config.SiteConfig.wsclean_recipes``, read with ``site_recipes()``), which a site
may change in its configuration without code. Image size and scale come from the site's pixel tiers
(``config.site().pixel_tier``) unless a test overrides them.

When the installed WSClean cannot run a recipe as written, ``adapt_to_version`` changes it and says how:
the change is logged and listed in the step's ``recipe_changes`` (the QA page shows them).
WSClean's output streams to the pod's log and the unit's ``logs/wsclean.log`` while it runs;
``DivergenceWatch`` stops a clean whose peak turns non-finite or grows without bound.

WSClean names interval images ``<prefix>-t0000-...``; ``stamp_images`` renames them to
``<prefix>-YYYYMMDD_HHMMSS-...`` with the UTC mid-time of each interval read from the MS TIME column, and
writes that time to the header as ``DATE-AVG`` (primary-beam correction uses it).
"""
from __future__ import annotations

import math
import re
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .constants import isot, utc_of
from .errors import InputError, ToolFailedError
from .logs import get_logger, log
from .msio import open_ms
from .products import LOGS_FOLDER
from .tools import require_tool, run_tool, tool_env

_logger = get_logger("wsclean")



class WSCleanOptions(BaseModel):
    """WSClean's arguments; ``None``/``False`` means the argument is not passed (WSClean's default)."""
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, description="-name: prefix of the output files")
    size: int | None = Field(None, description="-size N N: image width and height in pixels")
    scale_deg: float | None = Field(None, description="-scale: pixel size in degrees")
    pol: str = Field("I", description="-pol: polarisations to image, e.g. I or IV")
    niter: int = Field(0, description="-niter: maximum number of clean iterations (0: dirty only)")
    nmiter: int | None = Field(None, description="-nmiter: maximum number of major iterations")
    gain: float | None = Field(None, description="-gain: minor-iteration gain (WSClean's default 0.1)")
    mgain: float | None = Field(None, description="-mgain: major-iteration gain")
    multiscale: bool = Field(False, description="-multiscale: multi-scale clean")
    multiscale_scale_bias: float | None = Field(None, description="-multiscale-scale-bias")
    horizon_mask_deg: float | None = Field(None, description="-horizon-mask <deg>deg: do not clean near the horizon")
    auto_threshold: float | None = Field(None, description="-auto-threshold: stop at this many sigma")
    auto_mask: float | None = Field(None, description="-auto-mask: build a mask at this many sigma")
    local_rms: bool = Field(False, description="-local-rms: thresholds relative to a local rms map")
    weight: str = Field("briggs", description="-weight: natural, uniform or briggs")
    robust: float | None = Field(0.0, description="Briggs robustness (with -weight briggs)")
    taper_inner_tukey: float | None = Field(None, description="-taper-inner-tukey: inner Tukey taper (lambda)")
    intervals_out: int | None = Field(None, description="-intervals-out: number of time intervals to image")
    channels_out: int | None = Field(None, description="-channels-out: number of output channels (a cube)")
    no_dirty: bool = Field(False, description="-no-dirty: do not save the dirty image")
    make_psf: bool = Field(False, description="-make-psf: save the PSF even without cleaning")
    no_update_model_required: bool = Field(True, description="-no-update-model-required")
    threads: int | None = Field(None, description="-j: threads")
    mem_percent: float | None = Field(None, description="-mem: memory limit, percent of the machine")
    data_column: str | None = Field(None, description="-data-column (default: CORRECTED_DATA if present)")
    temp_dir: str | None = Field(None, description="-temp-dir: folder for reordered data")
    gridder: str | None = Field(None, description="-gridder: wstacking (WSClean's default), wgridder, ...")
    wgridder_accuracy: float | None = Field(None, description="-wgridder-accuracy (WSClean's default 1e-4)")
    log_time: bool = Field(True, description="-log-time: timestamps in WSClean's log")

    def args(self, version: str | None = None) -> list[str]:
        """The command-line arguments for WSClean ``version`` (default: the newest spelling), without the
        program name and the MS."""
        a: list[str] = []

        def flag(on: bool, name: str) -> None:
            if on:
                a.append(name)

        def value(v, name: str, fmt=str) -> None:
            if v is not None:
                a.extend([name, fmt(v)])

        flag(self.log_time, "-log-time")
        value(self.threads, "-j")
        value(self.mem_percent, "-mem", _num)
        a += ["-pol", self.pol]
        flag(self.multiscale, "-multiscale")
        value(self.multiscale_scale_bias, "-multiscale-scale-bias", _num)
        a += ["-niter", str(self.niter)]
        value(self.nmiter, "-nmiter")
        value(self.gain, "-gain", _num)
        value(self.mgain, "-mgain", _num)
        value(self.horizon_mask_deg, "-horizon-mask", lambda d: f"{_num(d)}deg")
        value(self.auto_threshold, "-auto-threshold", _num)
        value(self.auto_mask, "-auto-mask", _num)
        flag(self.local_rms, "-local-rms")
        if self.size is not None:
            a += ["-size", str(self.size), str(self.size)]
        value(self.scale_deg, "-scale", _num)
        value(self.taper_inner_tukey, "-taper-inner-tukey", _num)
        a += ["-weight", self.weight] + ([_num(self.robust)] if self.weight == "briggs" else [])
        value(self.intervals_out, "-intervals-out")
        value(self.channels_out, "-channels-out")
        flag(self.no_dirty, "-no-dirty")
        flag(self.make_psf, "-make-psf")
        flag(self.no_update_model_required, "-no-update-model-required")
        value(self.data_column, "-data-column")
        value(self.temp_dir, "-temp-dir")
        a += gridder_args(self.gridder, version)
        value(self.wgridder_accuracy, "-wgridder-accuracy", _num)
        value(self.name, "-name")
        return a


def _num(v: float) -> str:
    """0.95 -> '0.95', 10.0 -> '10', -0.75 -> '-0.75' (as a person would type it)."""
    return f"{v:g}"


class Recipe(BaseModel):
    """One imaging run of orca: output name suffix, output folder, and WSClean options."""
    model_config = ConfigDict(extra="forbid")

    suffix: str
    folder: str
    options: WSCleanOptions


# How we drive orca's recipes beyond orca's own arguments; bench/phase2_orca.py times both ways. On the
# bench hour (1024 px all-sky, WSClean 3.1) the w-gridder takes about a third of w-stacking's time, and
# its dirty images move by up to ~1e-2 of the peak (low elevations): that is w-stacking's own error, as
# the w-gridder at 1e-4 and at 1e-6 accuracy agree to 1e-6, and w-stacking with 4x the w-layers
# comes 3x closer to them.
SPEEDUPS = dict(gridder="wgridder")

# --- orca's recipes ------------------------------------------------------------------------------
PILOT_SNAPSHOT = Recipe(suffix="Pilot-Snapshot", folder="snapshots", options=WSCleanOptions(
    pol="IV", niter=0, mem_percent=20, taper_inner_tukey=30, weight="briggs", robust=0,
    no_dirty=True, make_psf=True))

CLEAN_SNAPSHOT = Recipe(suffix="Clean-Snapshot", folder="snapshots_clean", options=WSCleanOptions(
    pol="I", niter=50000, nmiter=2, mgain=0.9999, auto_mask=5, auto_threshold=1, local_rms=True,
    horizon_mask_deg=10, mem_percent=50, no_dirty=True, taper_inner_tukey=30, weight="briggs", robust=0))

# Shared by the Stokes I science runs.
_SCIENCE_I = dict(pol="I", multiscale=True, multiscale_scale_bias=0.8, mgain=0.95, horizon_mask_deg=10,
                  auto_threshold=0.5, auto_mask=3, local_rms=True, mem_percent=50)
_STOKES_V = dict(pol="V", niter=0, horizon_mask_deg=10, mem_percent=50, taper_inner_tukey=30, robust=0,
                 no_dirty=True)

SCIENCE_RECIPES: tuple[Recipe, ...] = (
    Recipe(suffix="I-Deep-Taper-Robust-0.75", folder="I/deep",
           options=WSCleanOptions(**_SCIENCE_I, niter=500000, taper_inner_tukey=30, robust=-0.75)),
    Recipe(suffix="I-Deep-Taper-Robust-0", folder="I/deep",
           options=WSCleanOptions(**_SCIENCE_I, niter=500000, taper_inner_tukey=30, robust=0)),
    Recipe(suffix="I-Deep-NoTaper-Robust-0.75", folder="I/deep",
           options=WSCleanOptions(**_SCIENCE_I, niter=150000, robust=-0.75)),
    Recipe(suffix="I-Deep-NoTaper-Robust-0", folder="I/deep",
           options=WSCleanOptions(**_SCIENCE_I, niter=150000, robust=0)),
    Recipe(suffix="I-Taper-10min", folder="I/10min",
           options=WSCleanOptions(**_SCIENCE_I, niter=50000, taper_inner_tukey=30, robust=0, intervals_out=6)),
    Recipe(suffix="V-Taper-Deep", folder="V/deep", options=WSCleanOptions(**_STOKES_V)),
    Recipe(suffix="V-Taper-10min", folder="V/10min", options=WSCleanOptions(**_STOKES_V, intervals_out=6)),
)


class Recipes(BaseModel):
    """The WSClean recipes a site runs (``SiteConfig.wsclean_recipes``); the defaults are orca's, unchanged.
    Run-time arguments (-name, -size, -scale, -j, -temp-dir, the snapshots' -intervals-out) are set per run."""
    model_config = ConfigDict(extra="forbid")

    pilot_snapshot: Recipe = Field(PILOT_SNAPSHOT, description="dirty Stokes I and V image of every integration")
    clean_snapshot: Recipe = Field(CLEAN_SNAPSHOT, description="CLEANed Stokes I image of every integration")
    science: list[Recipe] = Field(list(SCIENCE_RECIPES), description="the science images of the subband-hour")

    @field_validator("science")
    @classmethod
    def _unique_suffixes(cls, recipes: list[Recipe]) -> list[Recipe]:
        suffixes = [r.suffix for r in recipes]
        if len(set(suffixes)) != len(suffixes):
            raise ValueError(f"science recipe suffixes must be unique (they name the images): {suffixes}")
        return recipes


def short_hour_recipes() -> Recipes:
    """orca's recipes for simulated hours of a few integrations (the demo, the Phase 2 benchmark): the
    10-minute clean stops after as many major iterations as orca's clean of one integration
    (CLEAN_SNAPSHOT's -nmiter). There a 10-minute image holds one or two integrations, whose clean diverges
    in WSClean 3.1 (a source against the image edge, its peak x1.65 per major iteration, stopped by the
    divergence watch) within WSClean's default 20 major iterations."""
    few = {"nmiter": CLEAN_SNAPSHOT.options.nmiter}
    return Recipes(science=[r.model_copy(update={"options": r.options.model_copy(update=few)})
                            if r.options.intervals_out and r.options.niter else r for r in SCIENCE_RECIPES])


def site_recipes() -> Recipes:
    """The recipes in force: the site's configuration, orca's by default."""
    from . import config  # config's SiteConfig holds this module's models, so it cannot be imported at the top

    return config.site().wsclean_recipes


def image_geometry(subband: str, reduced: bool, size: int | None = None,
                   scale_deg: float | None = None) -> tuple[int, float]:
    """(pixels, degrees per pixel) for a subband.

    ``reduced`` picks the subband's pixel tier (fewer, larger pixels at low frequency); otherwise every
    subband gets the finest tier. Size and scale always come as a pair, so the field of view never
    shrinks (orca paired a reduced size with the fine scale for clean snapshots). ``size``/``scale_deg``
    override the tier (small test images).
    """
    from . import config

    site = config.site()
    tier = site.pixel_tier(subband) if reduced else max(site.pixel_tiers, key=lambda t: t.size)
    return (size or tier.size), (scale_deg or tier.scale_deg)


def default_threads(threads: int | None = None) -> int:
    """WSClean -j: as asked, else the site's value, never more than the CPUs this process may use."""
    import os

    from . import config

    return threads or max(1, min(config.site().wsclean_threads, len(os.sched_getaffinity(0))))


# --- Version and its quirks ----------------------------------------------------------------------
@lru_cache(maxsize=None)
def _version_of(exe: str) -> str:
    out = subprocess.run([exe, "--version"], env=tool_env(), capture_output=True, text=True).stdout
    m = re.search(r"WSClean version (\d+(?:\.\d+)*)", out)
    return m.group(1) if m else "unknown"


def wsclean_version() -> str:
    """WSClean's version string, e.g. '3.1.0'."""
    return _version_of(require_tool("wsclean"))


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", version)[:2]) or (0,)


def gridder_args(gridder: str | None, version: str | None) -> list[str]:
    """``-gridder X`` (WSClean 3.6; it calls the older flags deprecated); before 3.6, ``-use-wgridder``,
    the only spelling WSClean 3.1 knows."""
    if gridder is None:
        return []
    if version and _version_tuple(version) < (3, 6):
        if gridder == "wgridder":
            return ["-use-wgridder"]
        if gridder != "wstacking":
            raise InputError(f"gridder {gridder!r} is not supported with WSClean {version}")
        return []  # w-stacking is the default there
    return ["-gridder", gridder]


def adapt_to_version(options: WSCleanOptions, version: str) -> tuple[WSCleanOptions, list[str]]:
    """Adjust options that a given WSClean version cannot run; returns the options and what changed.

    WSClean 3.1 (Debian 12's 3.1-3) aborts with heap corruption ("double free or corruption") whenever
    -multiscale and -local-rms are combined, on any data. One of the two must go: without -local-rms
    the multi-scale clean diverged on this project's simulated hours (4.8 KJy to 14.6 MJy at the
    iteration limit), while a single-scale clean with -local-rms converged on the same data (4.8 KJy to
    11 Jy in 3 major iterations); so -multiscale goes, with its scale bias.
    WSClean 3.6 (Debian 13, the step image) runs the recipes as written.
    """
    changes = []
    if version.startswith("3.1") and options.multiscale and options.local_rms:
        options = options.model_copy(update={"multiscale": False, "multiscale_scale_bias": None})
        changes.append(f"wsclean {version}: -multiscale dropped, single-scale clean (3.1 aborts on -multiscale "
                       f"with -local-rms)")
    return options, changes


# --- Watching a clean ----------------------------------------------------------------------------
# A clean diverges once a peak exceeds this many times the largest starting peak. A converging clean's
# peak stays below its start; cleaning into the noise of a short interval swings to a few or tens of times
# the start (WSClean 3.1 without -local-rms: 22x on the test unit's 10-minute images; WSClean 3.6 with it:
# 4x); a diverging one runs off by orders of magnitude (recorded here: 1.27 KJy to 2.6e23 KJy) or to NaN.
DIVERGENCE_GROWTH = 100.0

# How WSClean (aocommon's FluxDensity::ToNiceString) prints a flux: "1.37 KJy", "-930.26 mJy", "-nan Jy".
_FLUX = r"(-?(?:nan|inf|\d+(?:\.\d*)?(?:e[-+]?\d+)?))\s+(nJy|µJy|mJy|Jy|KJy)"
_JY_PER_UNIT = {"nJy": 1e-9, "µJy": 1e-6, "mJy": 1e-3, "Jy": 1.0, "KJy": 1e3}
_MAJOR = re.compile(r"== Deconvolving \((\d+)\) ==")
_START_PEAK = re.compile(rf"(?:Start peak=|Initial peak: ){_FLUX}")
_PEAK = re.compile(rf"(?:Iteration \d+[^:]*: |Stopped on peak ){_FLUX}")
_WSCLEAN_SAYS_DIVERGING = "Stopping clean because of divergence"


class DivergenceWatch:
    """Reads WSClean's output line by line (``run_tool``'s ``watch``) and says why to stop a clean that
    diverges: a peak that is not a finite number, a peak more than DIVERGENCE_GROWTH times the largest
    peak the clean started from (first major iteration of each image), or WSClean's own divergence warning.
    A converging clean's residual peak only falls below where it started."""

    def __init__(self, recipe: str):
        self.recipe = recipe
        self.first_major = False
        self.start_jy = 0.0

    def __call__(self, line: str) -> str | None:
        if _WSCLEAN_SAYS_DIVERGING in line:
            return self._diverged(f"WSClean says: {line.strip()}")
        if m := _MAJOR.search(line):
            self.first_major = m.group(1) == "1"
            return None
        start = _START_PEAK.search(line)
        if start and self.first_major and math.isfinite(jy := _jansky(start)):
            self.start_jy = max(self.start_jy, abs(jy))
            return None
        m = start or _PEAK.search(line)
        if not m:
            return None
        jy, seen = _jansky(m), f"{m.group(1)} {m.group(2)}"
        if not math.isfinite(jy):
            return self._diverged(f"peak {seen} (not a number) in: {line.strip()}")
        if self.start_jy and abs(jy) > DIVERGENCE_GROWTH * self.start_jy:
            return self._diverged(f"peak {seen}, more than {DIVERGENCE_GROWTH:g} times the starting peak "
                                  f"{self.start_jy:.4g} Jy, in: {line.strip()}")
        return None

    def _diverged(self, what: str) -> str:
        return f"the clean of recipe {self.recipe} diverged: {what}"


def _jansky(match: re.Match) -> float:
    return float(match.group(1)) * _JY_PER_UNIT[match.group(2)]


# --- Running -------------------------------------------------------------------------------------
class WSCleanRun(BaseModel):
    """What one WSClean call did: its arguments, wall seconds, changes for the version, images."""
    args: list[str]
    seconds: float
    recipe_changes: list[str] = Field([], description="'<recipe>: <change>' for each argument the installed "
                                                      "WSClean could not run as the recipe says")
    images: list[str] = []


def run_wsclean(options: WSCleanOptions, ms: str | Path, log_file: str | Path | None = None,
                recipe: str | None = None) -> WSCleanRun:
    """Run WSClean on ``ms`` with ``options`` (adapted to the installed version), stopping a diverging clean.
    ``recipe`` names the run in changes and errors (default: the output name)."""
    require_tool("wsclean")
    if options.name is None:
        raise InputError("WSClean needs an output name (-name)")
    recipe = recipe or Path(options.name).name
    options, changes = adapt_to_version(options, wsclean_version())
    changes = [f"{recipe}: {change}" for change in changes]
    for change in changes:
        log(_logger, "recipe changed for the installed wsclean", level=30, change=change)
    Path(options.name).parent.mkdir(parents=True, exist_ok=True)
    if options.temp_dir:
        Path(options.temp_dir).mkdir(parents=True, exist_ok=True)
    args = ["wsclean", *options.args(wsclean_version()), str(ms)]
    seconds = run_tool(args, log_file=log_file, watch=DivergenceWatch(recipe))
    return WSCleanRun(args=args, seconds=round(seconds, 3), recipe_changes=changes)


def image_recipe(recipe: Recipe, ms: str | Path, work_dir: str | Path, subband: str, size: int, scale_deg: float,
                 threads: int | None = None, intervals_out: int | None = None, speedups: bool = True) -> WSCleanRun:
    """Run one recipe into ``<work_dir>/<folder>/<sb>-<suffix>``, then stamp its images with UTC mid-times.

    ``speedups=False`` runs it as orca does (orca's arguments only), for comparisons."""
    require_tool("wsclean")
    work_dir = Path(work_dir)
    prefix = work_dir / recipe.folder / f"{subband}-{recipe.suffix}"
    n_times = len(unique_times(ms))
    intervals = intervals_out or recipe.options.intervals_out or 1
    intervals = max(1, min(intervals, n_times))  # WSClean cannot split fewer timesteps than intervals
    for stale in prefix.parent.glob(f"{prefix.name}-*.fits*"):  # a re-run replaces, never mixes, outputs
        stale.unlink()
    options = recipe.options.model_copy(update={
        "name": str(prefix), "size": size, "scale_deg": scale_deg, "threads": default_threads(threads),
        "intervals_out": intervals if intervals > 1 else None,
        "temp_dir": str(work_dir / ".wsclean-tmp"), **(SPEEDUPS if speedups else {})})
    result = run_wsclean(options, ms, log_file=work_dir / LOGS_FOLDER / "wsclean.log", recipe=recipe.suffix)
    result.images = [str(p) for p in stamp_images(prefix, ms, intervals)]
    if not result.images:
        raise ToolFailedError(f"wsclean wrote no images for {prefix.name} in {prefix.parent}")
    return result


# --- Output names --------------------------------------------------------------------------------
def unique_times(ms: str | Path) -> np.ndarray:
    """Sorted distinct TIME values (MJD seconds) of an MS: WSClean's timesteps."""
    with open_ms(ms) as tab:
        return np.unique(tab.getcol("TIME"))


def interval_bounds(n_times: int, n_intervals: int) -> list[tuple[int, int]]:
    """Timestep index ranges [start, end) of WSClean's ``-intervals-out`` split."""
    return [(i * n_times // n_intervals, (i + 1) * n_times // n_intervals) for i in range(n_intervals)]


def interval_mid_times(ms: str | Path, n_intervals: int) -> list[float]:
    """UTC mid-time (MJD seconds) of each interval: halfway between its first and last integration."""
    times = unique_times(ms)
    if times.size == 0:
        raise InputError(f"{ms}: Measurement Set has no rows to image")
    return [float((times[a] + times[b - 1]) / 2) for a, b in interval_bounds(times.size, n_intervals)]


def utc_stamp(time_s: float) -> str:
    """MJD seconds -> 'YYYYMMDD_HHMMSS' (UTC, rounded to the second)."""
    return f"{utc_of(round(time_s)):%Y%m%d_%H%M%S}"


_STAMP = re.compile(r"^\d{8}_\d{6}-")
_INTERVAL = re.compile(r"^t(\d{4})-")


def stamp_images(prefix: str | Path, ms: str | Path, n_intervals: int) -> list[Path]:
    """Rename ``<prefix>-t0000-<rest>.fits`` (or ``<prefix>-<rest>.fits`` for one interval) to
    ``<prefix>-<YYYYMMDD_HHMMSS>-<rest>.fits`` and record the mid-time as DATE-AVG. Idempotent."""
    from astropy.io import fits

    prefix = Path(prefix)
    mids = interval_mid_times(ms, n_intervals)
    out = []
    for path in sorted(prefix.parent.glob(f"{prefix.name}-*.fits")):
        rest = path.name[len(prefix.name) + 1:]
        if rest.endswith(".pbcorr.fits"):
            continue  # a product of pb-correct, not of WSClean
        m = _INTERVAL.match(rest)
        if m:
            index, rest = int(m.group(1)), rest[m.end():]
        elif _STAMP.match(rest):
            out.append(path)  # already stamped by an earlier run
            continue
        elif n_intervals == 1:
            index = 0
        else:
            continue
        if index >= len(mids):
            raise ToolFailedError(f"{path}: interval {index} but only {len(mids)} intervals were requested")
        target = path.with_name(f"{prefix.name}-{utc_stamp(mids[index])}-{rest}")
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["DATE-AVG"] = (isot(mids[index]),
                                          "UTC mid-time of the imaged interval")
        path.replace(target)
        out.append(target)
    return sorted(out)

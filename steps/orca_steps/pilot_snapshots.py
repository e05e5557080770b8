"""Step ``pilot-snapshots``: a dirty Stokes I and V image of every integration, for snapshot QA.

The site's pilot recipe (orca's ``wsclean.PILOT_SNAPSHOT`` by default) with ``-intervals-out`` = the number of integrations,
into ``<work_dir>/snapshots/<sb>-Pilot-Snapshot-<YYYYMMDD_HHMMSS>-{I,V}-image.fits``. Only the first
PSF is kept (as orca does): they differ little and would otherwise double the snapshot volume.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from . import config
from .labels import Subband
from .logs import step_timer
from .tools import require_tool
from .wsclean import image_geometry, image_recipe, site_recipes, unique_times


class Options(BaseModel):
    ms: str = Field(description="the concatenated, re-phased, flagged MS of the subband-hour")
    work_dir: str = Field(description="NVMe work dir of the unit; images go to <work_dir>/snapshots/")
    subband: Subband = Field(description="subband label, e.g. 73MHz")
    reduced_pixels: bool = Field(False, description="use the subband's pixel tier instead of the finest one")
    image_size: int | None = Field(None, description="override the image size in pixels (tests)")
    image_scale_deg: float | None = Field(None, description="override the pixel size in degrees (tests)")
    wsclean_threads: int | None = Field(None, description="WSClean -j (default: site wsclean_threads)")


class Result(BaseModel):
    snapshots_dir: str
    images: list[str] = Field(description="Stokes I and V images, time-ordered")
    n_intervals: int
    tool_seconds: dict[str, float] = Field(description="seconds inside each external tool")
    recipe_changes: list[str] = Field([], description="what the installed WSClean could not run as written")


def pilot_snapshots(ms: str | Path, work_dir: str | Path, subband: str, size: int, scale_deg: float,
                    threads: int | None = None) -> Result:
    """Image every integration of ``ms`` (dirty, Stokes I and V) and name each by its UTC mid-time."""
    require_tool("wsclean")
    config.check_subband(subband)
    n_ints = len(unique_times(ms))
    recipe = site_recipes().pilot_snapshot
    run = image_recipe(recipe, ms, work_dir, subband, size, scale_deg, threads, intervals_out=n_ints)
    psfs = sorted(p for p in map(Path, run.images) if p.name.endswith("-psf.fits"))
    for extra in psfs[1:]:
        extra.unlink()
    images = [p for p in run.images if p.endswith("-image.fits")]
    return Result(snapshots_dir=str(Path(work_dir) / recipe.folder), images=images, n_intervals=n_ints,
                  tool_seconds={"wsclean": run.seconds}, recipe_changes=run.recipe_changes)


def run(options: Options) -> Result:
    size, scale = image_geometry(options.subband, options.reduced_pixels, options.image_size,
                                 options.image_scale_deg)
    with step_timer("pilot-snapshots", options.work_dir, subband=options.subband) as timing:
        result = pilot_snapshots(options.ms, options.work_dir, options.subband, size, scale,
                                 options.wsclean_threads)
        timing.update({f"{tool}_seconds": s for tool, s in result.tool_seconds.items()},
                      recipe_changes=result.recipe_changes)
    return result

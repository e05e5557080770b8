"""Step ``clean-snapshots`` (``clean_snapshots``): CLEANed Stokes I image of every integration, fpacked.

The site's clean-snapshot recipe (orca's ``wsclean.CLEAN_SNAPSHOT`` by default: at most 2 major cycles) into
``<work_dir>/snapshots_clean/``; PSF, model and residual images are removed, the restored images are
always compressed to ``.fits.fs``. ``clean_reduced_pixels`` picks the subband's pixel tier (size and
scale together, so the field of view is kept).
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from . import config
from .compress import fpack_files
from .labels import Subband
from .logs import step_timer
from .products import LOGS_FOLDER
from .tools import require_tool
from .wsclean import image_geometry, image_recipe, site_recipes, unique_times

DISCARDED = ("-psf.fits", "-model.fits", "-residual.fits", "-dirty.fits")


class Options(BaseModel):
    ms: str = Field(description="the concatenated, re-phased, flagged MS of the subband-hour")
    work_dir: str = Field(description="NVMe work dir of the unit; images go to <work_dir>/snapshots_clean/")
    subband: Subband = Field(description="subband label, e.g. 73MHz")
    clean_reduced_pixels: bool = Field(False, description="use the subband's pixel tier for clean snapshots")
    image_size: int | None = Field(None, description="override the image size in pixels (tests)")
    image_scale_deg: float | None = Field(None, description="override the pixel size in degrees (tests)")
    wsclean_threads: int | None = Field(None, description="WSClean -j (default: site wsclean_threads)")


class Result(BaseModel):
    snapshots_dir: str
    images: list[str] = Field(description="fpacked restored images (.fits.fs), time-ordered")
    n_intervals: int
    tool_seconds: dict[str, float] = Field(description="seconds inside each external tool")
    recipe_changes: list[str] = Field([], description="what the installed WSClean could not run as written")


def clean_snapshots(ms, work_dir, subband: str, size: int, scale_deg: float, threads: int | None = None) -> Result:
    """CLEAN every integration of ``ms`` in Stokes I, keep the restored images, fpack them."""
    require_tool("wsclean")
    require_tool("fpack")
    config.check_subband(subband)
    n_ints = len(unique_times(ms))
    recipe = site_recipes().clean_snapshot
    run = image_recipe(recipe, ms, work_dir, subband, size, scale_deg, threads, intervals_out=n_ints)
    keep = []
    for image in map(Path, run.images):
        if image.name.endswith(DISCARDED):
            image.unlink()
        else:
            keep.append(image)
    prefix = Path(work_dir) / recipe.folder / f"{subband}-{recipe.suffix}"
    Path(f"{prefix}-horizon-mask.fits").unlink(missing_ok=True)  # one for all intervals, not a snapshot
    packed, fpack_seconds = fpack_files(keep, Path(work_dir) / LOGS_FOLDER / "fpack.log")
    return Result(snapshots_dir=str(Path(work_dir) / recipe.folder), images=[str(p) for p in packed],
                  n_intervals=n_ints, tool_seconds={"wsclean": run.seconds, "fpack": round(fpack_seconds, 3)},
                  recipe_changes=run.recipe_changes)


def run(options: Options) -> Result:
    size, scale = image_geometry(options.subband, options.clean_reduced_pixels, options.image_size,
                                 options.image_scale_deg)
    with step_timer("clean-snapshots", options.work_dir, subband=options.subband) as timing:
        result = clean_snapshots(options.ms, options.work_dir, options.subband, size, scale,
                                 options.wsclean_threads)
        timing.update({f"{tool}_seconds": s for tool, s in result.tool_seconds.items()},
                      recipe_changes=result.recipe_changes)
    return result

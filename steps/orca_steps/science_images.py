"""Step ``science-images``: orca's 7 WSClean science runs on the subband-hour.

Stokes I deep x4 (inner taper or not, Briggs -0.75 or 0), Stokes I in 10-minute intervals, Stokes V deep
and in 10-minute intervals (the site's ``wsclean_recipes.science``, orca's by default), into ``<work_dir>/{I,V}/{deep,10min}/``, every
image named with its UTC mid-time.
"""
from __future__ import annotations

from pydantic import BaseModel, Field

from . import config
from .errors import InputError
from .labels import Subband
from .logs import step_timer
from .tools import require_tool
from .wsclean import image_geometry, image_recipe, site_recipes


class Options(BaseModel):
    ms: str = Field(description="the concatenated, re-phased, flagged MS of the subband-hour")
    work_dir: str = Field(description="NVMe work dir of the unit")
    subband: Subband = Field(description="subband label, e.g. 73MHz")
    reduced_pixels: bool = Field(False, description="use the subband's pixel tier instead of the finest one")
    recipes: list[str] | None = Field(None, description="run only these recipes (suffixes); default: all 7")
    image_size: int | None = Field(None, description="override the image size in pixels (tests)")
    image_scale_deg: float | None = Field(None, description="override the pixel size in degrees (tests)")
    wsclean_threads: int | None = Field(None, description="WSClean -j (default: site wsclean_threads)")


class Result(BaseModel):
    images: dict[str, list[str]] = Field(description="recipe suffix -> FITS files it wrote")
    tool_seconds: dict[str, float] = Field(description="seconds inside each external tool")
    recipe_changes: list[str] = Field([], description="what the installed WSClean could not run as written")


def science_images(ms, work_dir, subband: str, size: int, scale_deg: float, recipes: list[str] | None = None,
                   threads: int | None = None) -> Result:
    """Run the science recipes (all, or those named) on ``ms``."""
    require_tool("wsclean")
    config.check_subband(subband)
    science = site_recipes().science
    known = [r.suffix for r in science]
    unknown = sorted(set(recipes or []) - set(known))
    if unknown:
        raise InputError(f"unknown science recipe(s) {unknown}; known: {known}")
    images, seconds, changes = {}, 0.0, []
    for recipe in science:
        if recipes and recipe.suffix not in recipes:
            continue
        done = image_recipe(recipe, ms, work_dir, subband, size, scale_deg, threads)
        images[recipe.suffix] = done.images
        seconds += done.seconds
        changes += done.recipe_changes
    return Result(images=images, tool_seconds={"wsclean": round(seconds, 3)}, recipe_changes=changes)


def run(options: Options) -> Result:
    size, scale = image_geometry(options.subband, options.reduced_pixels, options.image_size,
                                 options.image_scale_deg)
    with step_timer("science-images", options.work_dir, subband=options.subband) as timing:
        result = science_images(options.ms, options.work_dir, options.subband, size, scale, options.recipes,
                                options.wsclean_threads)
        timing.update({f"{tool}_seconds": s for tool, s in result.tool_seconds.items()},
                      recipe_changes=result.recipe_changes)
    return result

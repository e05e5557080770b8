"""Step ``cube``: orca's spectral cube of the deep Stokes I recipe, one FITS cube per WSClean product.

WSClean runs the recipe ``I-Deep-Taper-Robust-0`` with ``-channels-out nchan`` (nchan = the MS's
``SPECTRAL_WINDOW.NUM_CHAN[0]``) and ``-niter round(500000 / sqrt(nchan))``, into a hidden folder (a
crash never archives loose channels). Each channel image is primary-beam corrected at its own frequency;
with ``cube_dewarp`` the MFS image's ionospheric screen (``dewarp``'s machinery) is applied to each
PB-corrected channel scaled by (nu_MFS / nu)^2, the ionosphere's refraction law (no screen with fewer than
6 anchors or one whose leave-one-out residual is no better than the raw offsets, as in ``dewarp``; the
dewarped cube's DWSRC, DWFREQ and DWANCH name the image, frequency and anchors of the screen). The
channels of each product are streamed into one (1, nchan, ny, nx) float32 cube with a linear FREQ axis and
a ``CHANNELS`` table (CHAN, FREQ, BMAJ, BMIN, BPA); the per-channel files are then deleted. Names: ``products``.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import config
from .constants import isot
from .errors import InputError, ToolFailedError
from .fileio import atomic_path
from .logs import get_logger, log, step_timer
from .msio import open_table
from .pb_correct import BeamModel, pb_correct_image
from .products import CUBE_FOLDER, CUBE_PRODUCTS, CUBE_RECIPE, LOGS_FOLDER, cube_name
from .tools import require_tool
from .wsclean import (default_threads, image_geometry, run_wsclean, site_recipes, unique_times,
                      utc_stamp)

_logger = get_logger("cube")
CHANNEL_DIR = ".cube-channels"  # hidden: archive skips it
DEEP_NITER = 500000


class Options(BaseModel):
    ms: str = Field(description="the concatenated, re-phased, flagged MS of the subband-hour")
    work_dir: str = Field(description="NVMe work dir of the unit")
    subband: str = Field(description="subband label, e.g. 73MHz")
    reduced_pixels: bool = Field(False, description="use the subband's pixel tier instead of the finest one")
    beam: str | None = Field(None, description="H5 beam model (default: the site's beam_model)")
    cube_dewarp: bool = Field(False, description="dewarp each channel with the MFS image's screen x (nu_MFS/nu)^2")
    catalogue: str | None = Field(None, description="VLSSr catalogue for cube_dewarp (default: the site's)")
    image_size: int | None = Field(None, description="override the image size in pixels (tests)")
    image_scale_deg: float | None = Field(None, description="override the pixel size in degrees (tests)")
    wsclean_threads: int | None = Field(None, description="WSClean -j (default: site wsclean_threads)")


class Result(BaseModel):
    cubes: dict[str, str] = Field(description="product (image, image.pbcorr, ...) -> cube FITS")
    nchan: int
    freqs_hz: list[float]
    dewarp_status: str | None = Field(None, description="what cube_dewarp did (None: not asked)")
    tool_seconds: dict[str, float]
    recipe_changes: list[str] = Field([], description="what the installed WSClean could not run as written")


def ms_channels(ms: str | Path) -> int:
    """orca's nchan: ``SPECTRAL_WINDOW.NUM_CHAN[0]``."""
    with open_table(Path(ms) / "SPECTRAL_WINDOW") as spw:
        return int(spw.getcol("NUM_CHAN")[0])


def deep_niter(nchan: int) -> int:
    return int(round(DEEP_NITER / np.sqrt(nchan)))


def channel_files(prefix: Path, nchan: int, product: str) -> list[Path]:
    """WSClean's per-channel outputs ``<prefix>-NNNN-<product>.fits`` (a single channel has no index)."""
    names = [f"{prefix.name}-{k:04d}-{product}.fits" for k in range(nchan)] if nchan > 1 else [
        f"{prefix.name}-{product}.fits"]
    paths = [prefix.parent / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ToolFailedError(f"wsclean did not write {missing[0]} ({len(missing)} channel files missing)")
    return paths


def _freq_axis(header) -> int:
    for k in range(1, header["NAXIS"] + 1):
        if str(header.get(f"CTYPE{k}", "")).startswith("FREQ"):
            return k
    raise InputError("channel image has no FREQ axis")


def stack_channels(paths: list[Path], out: Path) -> list[float]:
    """Stream 2-D channel images into one (1, nchan, ny, nx) float32 cube plus a CHANNELS table.

    One channel is in memory at a time. The FREQ axis is linear (first channel, mean spacing); the
    table holds each channel's own frequency and restoring beam. Returns the channel frequencies.
    """
    from astropy.io import fits

    headers = [fits.getheader(p) for p in paths]
    freqs = np.array([h[f"CRVAL{_freq_axis(h)}"] for h in headers], dtype=float)
    first = headers[0]
    if _freq_axis(first) != 3 or first["NAXIS"] != 4:
        raise InputError(f"{paths[0]}: expected WSClean's (RA, DEC, FREQ, STOKES) axes")
    ny, nx = first["NAXIS2"], first["NAXIS1"]
    header = fits.Header()
    header["SIMPLE"], header["BITPIX"], header["NAXIS"] = True, -32, 4
    header["NAXIS1"], header["NAXIS2"], header["NAXIS3"], header["NAXIS4"] = nx, ny, len(paths), 1
    header["EXTEND"] = True
    skip = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "NAXIS3", "NAXIS4", "EXTEND", "BSCALE", "BZERO"}
    for card in first.cards:
        if card.keyword not in skip and card.keyword not in ("HISTORY", "COMMENT", ""):
            header[card.keyword] = (card.value, card.comment)
    step = float(np.mean(np.diff(freqs))) if len(freqs) > 1 else float(first.get("CDELT3", 0.0))
    header["CTYPE3"], header["CRPIX3"], header["CRVAL3"], header["CDELT3"], header["CUNIT3"] = (
        "FREQ", 1.0, float(freqs[0]), step, "Hz")
    header["NCHAN"] = (len(paths), "channels; CHANNELS table: each one's frequency and beam")
    beams = np.array([[h.get("BMAJ", np.nan), h.get("BMIN", np.nan), h.get("BPA", np.nan)] for h in headers], float)
    table = fits.BinTableHDU.from_columns([
        fits.Column("CHAN", "J", array=np.arange(len(paths))),
        fits.Column("FREQ", "D", unit="Hz", array=freqs),
        fits.Column("BMAJ", "D", unit="deg", array=beams[:, 0]),
        fits.Column("BMIN", "D", unit="deg", array=beams[:, 1]),
        fits.Column("BPA", "D", unit="deg", array=beams[:, 2])], name="CHANNELS")
    with atomic_path(out) as tmp:
        stream = fits.StreamingHDU(tmp, header)
        for path in paths:
            with fits.open(path, memmap=False) as hdul:
                plane = np.asarray(hdul[0].data, dtype=np.float32).reshape(ny, nx)
            stream.write(plane.astype(">f4"))
        stream.close()
        fits.append(tmp, table.data, table.header)
    return [float(f) for f in freqs]


def _set_mid_time(paths: list[Path], mid_s: float) -> None:
    """DATE-AVG = the hour's UTC mid-time, as the science images carry (pb-correct reads it)."""
    from astropy.io import fits

    for path in paths:
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["DATE-AVG"] = (isot(mid_s),
                                          "UTC mid-time of the imaged interval")


def channel_screen(mfs_pbcorr: Path, catalogue: str, work: Path):
    """(dx, dy, freq_MFS, anchors, status) of the MFS image's dewarp screen; dx is None when there is none."""
    from . import dewarp
    from .skyimage import load_image

    mfs = load_image(mfs_pbcorr, "cube MFS image")
    ref = dewarp.load_vlssr(catalogue)
    found = dewarp.find_sources(mfs.path, work)
    opts = dewarp.Options(work_dir=str(work), deep_image=str(mfs.path))
    pairs = dewarp.match(found, ref, mfs.freq_hz, opts)
    if len(pairs) < opts.min_anchors:
        return (None, None, mfs.freq_hz, len(pairs),
                f"not dewarped: not enough anchors ({len(pairs)} < {opts.min_anchors})")
    anchors, shifts = dewarp.anchor_shifts(mfs, found, ref, pairs)
    arcmin = mfs.pixel_deg * 60
    raw = float(np.sqrt(np.mean(np.sum(shifts ** 2, axis=1)))) * arcmin
    loo = float(np.sqrt(np.mean(np.square(dewarp.loo_residuals(anchors, shifts))))) * arcmin
    if loo >= raw:  # as the dewarp step: the screen would fit noise, not the ionosphere
        return (None, None, mfs.freq_hz, len(pairs), f"not dewarped: leave-one-out residual {loo:.2f}' is no "
                f"better than the raw offset {raw:.2f}'")
    dx, dy = dewarp.offset_screen(mfs, found, ref, pairs)
    return dx, dy, mfs.freq_hz, len(pairs), f"dewarped with {len(pairs)} anchors (offsets {raw:.2f}' -> {loo:.2f}')"


def dewarp_channels(paths: list[Path], dx, dy, freq_mfs: float) -> list[Path]:
    """Each channel resampled along the MFS screen scaled by (nu_MFS / nu)^2 (ionospheric refraction)."""
    from .dewarp import dewarp_image, dewarped_name
    from .skyimage import load_image

    out = []
    for path in paths:
        img = load_image(path, "cube channel")
        scale = (freq_mfs / img.freq_hz) ** 2
        out.append(dewarp_image(img, dx * scale, dy * scale, dewarped_name(path)))
    return out


def make_cube(ms: str | Path, work_dir: str | Path, subband: str, size: int, scale_deg: float, beam_path: str,
              dewarp_catalogue: str | None = None, threads: int | None = None) -> Result:
    """Image the channels, correct (and dewarp) them, stack each product into a cube, delete the channels."""
    require_tool("wsclean")
    work_dir = Path(work_dir)
    nchan = ms_channels(ms)
    times = unique_times(ms)
    if times.size == 0:
        raise InputError(f"{ms}: Measurement Set has no rows to image")
    mid = float((times[0] + times[-1]) / 2)
    stamp = utc_stamp(mid)
    recipe = next((r for r in site_recipes().science if r.suffix == CUBE_RECIPE), None)
    if recipe is None:
        raise InputError(f"the cube images with the science recipe {CUBE_RECIPE}, which the site's "
                         f"wsclean_recipes do not have")
    chan_dir = work_dir / CHANNEL_DIR
    shutil.rmtree(chan_dir, ignore_errors=True)  # a re-run starts clean
    prefix = chan_dir / f"{subband}-{CUBE_RECIPE}-cube"
    options = recipe.options.model_copy(update={
        "name": str(prefix), "size": size, "scale_deg": scale_deg, "threads": default_threads(threads),
        "niter": deep_niter(nchan), "channels_out": nchan if nchan > 1 else None, "no_dirty": False,
        "temp_dir": str(work_dir / ".wsclean-tmp")})
    done = run_wsclean(options, ms, log_file=work_dir / LOGS_FOLDER / "wsclean.log", recipe=f"{CUBE_RECIPE} (cube)")
    channels = {p: channel_files(prefix, nchan, p) for p in CUBE_PRODUCTS}
    _set_mid_time(channels["image"], mid)
    beam = BeamModel(beam_path)
    channels["image.pbcorr"] = [pb_correct_image(p, beam) for p in channels["image"]]
    status = None
    if dewarp_catalogue:
        mfs = prefix.parent / f"{prefix.name}-MFS-image.fits" if nchan > 1 else channels["image"][0]
        _set_mid_time([mfs], mid)
        mfs_pb = pb_correct_image(mfs, beam) if nchan > 1 else channels["image.pbcorr"][0]
        dx, dy, freq_mfs, anchors, status = channel_screen(mfs_pb, dewarp_catalogue, chan_dir)
        screen_cards = {"DWSRC": (mfs_pb.name, "image the dewarp screen was measured on"),
                        "DWFREQ": (freq_mfs, "[Hz] its frequency; channel k: screen x (DWFREQ/nu_k)^2"),
                        "DWANCH": (anchors, "catalogue anchors of the screen")}
        if dx is not None:
            channels["image.pbcorr_dewarped"] = dewarp_channels(channels["image.pbcorr"], dx, dy, freq_mfs)
    out_dir = work_dir / CUBE_FOLDER
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{subband}-{CUBE_RECIPE}-cube-*.fits"):
        stale.unlink()
    cubes, freqs = {}, []
    for key, paths in channels.items():
        product = key.split(".")[0]
        out = out_dir / cube_name(subband, product, stamp, pbcorr="pbcorr" in key, dewarped="dewarped" in key)
        freqs = stack_channels(paths, out)
        cubes[key] = str(out)
    if "image.pbcorr_dewarped" in cubes:
        from astropy.io import fits

        with fits.open(cubes["image.pbcorr_dewarped"], mode="update") as hdul:
            hdul[0].header.update(screen_cards)
    shutil.rmtree(chan_dir)
    log(_logger, "cube written", nchan=nchan, cubes=len(cubes), dewarp=status)
    return Result(cubes=cubes, nchan=nchan, freqs_hz=freqs, dewarp_status=status,
                  tool_seconds={"wsclean": done.seconds}, recipe_changes=done.recipe_changes)


def run(options: Options) -> Result:
    size, scale = image_geometry(options.subband, options.reduced_pixels, options.image_size,
                                 options.image_scale_deg)
    catalogue = (options.catalogue or config.site().vlssr_catalog) if options.cube_dewarp else None
    with step_timer("cube", options.work_dir, subband=options.subband) as timing:
        result = make_cube(options.ms, options.work_dir, options.subband, size, scale,
                           options.beam or config.site().beam_model, catalogue, options.wsclean_threads)
        timing.update({f"{tool}_seconds": s for tool, s in result.tool_seconds.items()},
                      recipe_changes=result.recipe_changes)
    return result

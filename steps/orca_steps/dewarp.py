"""Step ``dewarp``: undo the ionosphere's smooth position shifts against a reference catalogue.

PyBDSF finds compact sources in the deep I image (in a child process: it is noisy and keeps global state);
they are matched to a VLSSr-format catalogue (74 MHz, fluxes scaled by nu^-0.7, within ``match_arcmin``
and a flux-ratio window that widens away from 74 MHz). With at least ``min_anchors`` matches the
offsets are interpolated (thin-plate RBF) into a pixel-shift screen applied to every given image
(``*_dewarped.fits``). Fewer anchors: the result says "not enough anchors" and nothing is written; a
screen whose leave-one-out residual is no better than the raw offsets (no ionospheric shift to remove)
is not applied either. Either way the result names the images later steps should use (dewarped, else
the ones given).
``QA/dewarp.json`` (the result) and ``QA/dewarp_offsets.png`` (the anchors' offsets) feed the QA page.
The screen's own accuracy is judged honestly by leave-one-out: each anchor's shift predicted from the
others (``loo_rms_arcmin``); the in-sample residual says nothing, the screen passes through its anchors.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .errors import InputError, ToolFailedError
from .fileio import write_atomic
from .logs import step_timer
from .products import DEWARP_PLOT, DEWARP_RECORD, QA_FOLDER
from .skyimage import SkyImage, load_image, write_image

VLSSR_FREQ_HZ = 74e6


class Options(BaseModel):
    work_dir: str = Field(description="unit work dir; diagnostics go to QA/")
    deep_image: str = Field(description="deep Stokes I image used to find sources (always dewarped)")
    deep_images: list[str] = Field(default_factory=list, description="further deep images to dewarp (I and V)")
    interval_images: list[str] = Field(default_factory=list, description="10-min images to dewarp (I and V)")
    catalogue: str | None = Field(None, description=(
        "reference catalogue, VLSSr text format (RA h m s, Dec d m s, Dist, Flux Jy, ...); default: the site's"))
    match_arcmin: float = Field(5.0, description="match radius")
    min_anchors: int = Field(6, description="fewest matches for a screen")
    spectral_index: float = Field(-0.7, description="to scale 74 MHz fluxes")
    flux_window: float = Field(2.0, description="flux-ratio window at 74 MHz (x that many times |log10(nu/74MHz)|+1)")


class Result(BaseModel):
    status: str
    n_sources: int
    n_anchors: int
    rms_offset_arcmin: float | None = Field(description="rms anchor offset from the catalogue before dewarping")
    loo_rms_arcmin: float | None = Field(description="rms anchor offset left after dewarping, leave-one-out")
    dewarped: list[str]
    deep_image: str = Field(description="the deep I image for later steps: dewarped if the screen was applied")
    deep_images: list[str] = Field(description="deep images for later steps (dewarped, else as given)")
    interval_images: list[str] = Field(description="10-min images for later steps (dewarped, else as given)")


def load_vlssr(path: str | Path) -> np.ndarray:
    """(n, 3) ra_deg, dec_deg, flux_jy from a VLSSr text file; '#' lines, headers and error lines skipped.

    A source line starts with an integer: RA h m s, Dec d m s, Dist("), Flux (Jy, maybe '<'), then sizes.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: reference catalogue does not exist")
    rows = []
    for line_no, line in enumerate(p.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts or line.lstrip().startswith("#") or not parts[0].lstrip("+-").isdigit():
            continue
        try:
            if len(parts) < 8:
                raise ValueError(f"{len(parts)} fields, expected RA h m s, Dec d m s, Dist, Flux")
            h, m, s, d, dm, ds = (float(v) for v in parts[:6])
            flux = float(parts[7].lstrip("<"))
        except ValueError as exc:
            raise InputError(f"{p}, line {line_no}: malformed VLSSr entry: {exc}") from exc
        sign = -1.0 if parts[3].startswith("-") else 1.0
        rows.append((15 * (h + m / 60 + s / 3600), sign * (abs(d) + dm / 60 + ds / 3600), flux))
    if not rows:
        raise InputError(f"{p}: no sources in the reference catalogue")
    return np.array(rows)


def _bdsf_sources(image: str, out: str, work: str, log_fd: int) -> None:
    """In the child: PyBDSF's sources of ``image`` as JSON ``out``, run in ``work``; what it prints goes to
    ``log_fd``.

    gc.freeze(): PyBDSF calls gc.collect() after each of its steps, and each would walk every object the
    imports made (about a second in all); frozen, they are skipped. What PyBDSF finds does not change."""
    import gc
    import os

    os.dup2(log_fd, 1)  # C code's output
    os.dup2(log_fd, 2)
    sys.stdout = sys.stderr = open(log_fd, "w", buffering=1, closefd=False)  # Python's, a traceback too
    os.chdir(work)
    import bdsf

    gc.freeze()
    img = bdsf.process_image(image, quiet=True, thresh="hard", thresh_isl=5.0, thresh_pix=7.0, ncores=1)
    found = [[float(s.posn_sky_max[0]), float(s.posn_sky_max[1]), float(s.peak_flux_max)] for s in img.sources]
    Path(out).write_text(json.dumps(found))


def find_sources(image: Path, work: Path) -> np.ndarray:
    """PyBDSF sources (ra, dec, peak) of ``image``, run in a child process (PyBDSF is noisy and keeps global
    state). Forked, not a new interpreter: the child starts with what this process imported (numpy, scipy,
    astropy, matplotlib), a second or two less than importing PyBDSF afresh.

    Hard thresholds (the sigmas given): PyBDSF's default false-detection-rate choice divides by zero on
    small or mostly blank images.
    """
    import multiprocessing
    import tempfile

    work = Path(work).resolve()  # PyBDSF runs (and writes its logs) in ``work``: relative paths would break
    out = work / "bdsf_sources.json"
    out.unlink(missing_ok=True)
    with tempfile.TemporaryFile() as chatter:
        sys.stdout.flush()  # what this process has buffered must not be written twice
        sys.stderr.flush()
        proc = multiprocessing.get_context("fork").Process(
            target=_bdsf_sources, args=(str(Path(image).resolve()), str(out), str(work), chatter.fileno()))
        proc.start()
        proc.join()
        if proc.exitcode != 0 or not out.is_file():
            chatter.seek(0)
            said = chatter.read().decode(errors="replace").strip()[-800:]
            raise ToolFailedError(f"PyBDSF failed on {image} (exit code {proc.exitcode}): {said}")
    return np.array(json.loads(out.read_text())).reshape(-1, 3)


def match(found: np.ndarray, ref: np.ndarray, freq_hz: float, opts: Options) -> list[tuple[int, int]]:
    """(found index, reference index) pairs: nearest within radius and the flux-ratio window."""
    window = opts.flux_window * (1 + abs(np.log10(freq_hz / VLSSR_FREQ_HZ)))
    ref_flux = ref[:, 2] * (freq_hz / VLSSR_FREQ_HZ) ** opts.spectral_index
    pairs = []
    for i, (ra, dec, flux) in enumerate(found):
        sep = np.hypot(((ref[:, 0] - ra + 180) % 360 - 180) * np.cos(np.deg2rad(dec)), ref[:, 1] - dec) * 60
        j = int(np.argmin(sep))
        if sep[j] <= opts.match_arcmin and 1 / window <= flux / ref_flux[j] <= window:
            pairs.append((i, j))
    return pairs


def anchor_shifts(img: SkyImage, found: np.ndarray, ref: np.ndarray, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Anchor pixel positions (catalogue) and their measured pixel shifts (found - catalogue), (n, 2) each."""
    fx, fy = img.world_to_pixel(found[[p[0] for p in pairs], 0], found[[p[0] for p in pairs], 1])
    rx, ry = img.world_to_pixel(ref[[p[1] for p in pairs], 0], ref[[p[1] for p in pairs], 1])
    return np.column_stack([rx, ry]), np.column_stack([fx - rx, fy - ry])


def screen_model(anchors: np.ndarray, shifts: np.ndarray):
    """The smooth interpolator of the shifts (thin-plate spline plus a plane, lightly smoothed)."""
    from scipy.interpolate import RBFInterpolator

    return RBFInterpolator(anchors, shifts, kernel="thin_plate_spline", smoothing=1.0, degree=1)


def loo_residuals(anchors: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Per anchor, |measured - predicted| shift (pixels) with the screen built from the other anchors."""
    keep = np.ones(len(anchors), dtype=bool)
    out = np.empty(len(anchors))
    for k in range(len(anchors)):
        keep[k] = False
        out[k] = np.hypot(*(shifts[k] - screen_model(anchors[keep], shifts[keep])(anchors[k:k + 1])[0]))
        keep[k] = True
    return out


def offset_screen(img: SkyImage, found: np.ndarray, ref: np.ndarray, pairs) -> tuple[np.ndarray, np.ndarray]:
    """Pixel shift (dx, dy) maps: where each output pixel should sample the warped image."""
    interp = screen_model(*anchor_shifts(img, found, ref, pairs))
    ny, nx = img.data.shape
    step = 8  # the screen is smooth: evaluate on a coarse grid, then interpolate
    gy, gx = np.mgrid[0:ny + step:step, 0:nx + step:step]
    coarse = interp(np.column_stack([gx.ravel(), gy.ravel()])).reshape(gy.shape + (2,))
    from scipy.ndimage import map_coordinates

    yy, xx = np.mgrid[0:ny, 0:nx] / step
    return (map_coordinates(coarse[..., 0], [yy, xx], order=1), map_coordinates(coarse[..., 1], [yy, xx], order=1))


def plot_offsets(path: Path, img: SkyImage, anchors: np.ndarray, shifts: np.ndarray, loo_arcmin: np.ndarray) -> Path:
    """Diagnostics: each anchor's measured shift (arrow, arcmin) coloured by its leave-one-out residual."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arcmin = shifts * img.pixel_deg * 60
    fig, ax = plt.subplots(figsize=(6, 5.2))
    q = ax.quiver(anchors[:, 0], anchors[:, 1], arcmin[:, 0], arcmin[:, 1], loo_arcmin, cmap="viridis",
                  angles="xy", scale_units="inches", scale=max(1.0, float(np.abs(arcmin).max())))
    fig.colorbar(q, ax=ax, label="leave-one-out residual (arcmin)")
    ny, nx = img.data.shape
    ax.set(xlim=(0, nx), ylim=(0, ny), xlabel="x (pixel)", ylabel="y (pixel)", aspect="equal",
           title=f"Ionospheric offsets of {len(anchors)} anchors (arrow: image - catalogue)")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def dewarp_image(img: SkyImage, dx: np.ndarray, dy: np.ndarray, out: Path) -> Path:
    """Resample ``img`` along the screen (cubic); pixels drawn from blanks (PB-corrected horizon) stay blank.

    A cubic spline spreads one NaN over the whole image, so blanks are zeroed first and re-blanked after.
    """
    from scipy.ndimage import map_coordinates

    ny, nx = img.data.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    where = [yy + dy, xx + dx]
    blank = ~np.isfinite(img.data)
    data = map_coordinates(np.where(blank, 0.0, img.data), where, order=3, mode="constant", cval=np.nan)
    if blank.any():
        data[map_coordinates(blank.astype(float), where, order=1, mode="constant", cval=1.0) > 0] = np.nan
    return write_image(out, img, data)


def dewarped_name(path: Path) -> Path:
    return path.with_name((path.name[:-5] if path.name.endswith(".fits") else path.name) + "_dewarped.fits")


def dewarp_all(deep: SkyImage, paths: list[str], dx: np.ndarray, dy: np.ndarray) -> dict[str, str]:
    """Input path (normalised) -> dewarped path, one image in memory at a time (science images are large)."""
    out = dict.fromkeys(str(Path(p)) for p in [deep.path, *paths])
    for path in out:
        img = deep if path == str(deep.path) else load_image(path, "image to dewarp")
        if img.data.shape != deep.data.shape:
            raise InputError(f"{img.path}: shape {img.data.shape} differs from the deep image's {deep.data.shape}")
        out[path] = str(dewarp_image(img, dx, dy, dewarped_name(img.path)))
    return out


def run(options: Options) -> Result:
    from .config import site

    work = Path(options.work_dir)
    with step_timer("dewarp", options.work_dir):
        deep = load_image(options.deep_image, "deep Stokes I image")
        missing = [p for p in options.deep_images + options.interval_images if not Path(p).is_file()]
        if missing:
            raise InputError(f"{missing[0]}: image to dewarp does not exist")
        ref = load_vlssr(options.catalogue or site().vlssr_catalog)
        (work / QA_FOLDER).mkdir(parents=True, exist_ok=True)
        found = find_sources(deep.path, work / QA_FOLDER)
        pairs = match(found, ref, deep.freq_hz, options)
        if len(pairs) < options.min_anchors:
            result = Result(status=f"not enough anchors ({len(pairs)} < {options.min_anchors})",
                            n_sources=len(found), n_anchors=len(pairs), rms_offset_arcmin=None, loo_rms_arcmin=None,
                            dewarped=[], deep_image=str(deep.path), deep_images=options.deep_images,
                            interval_images=options.interval_images)
        else:
            seps = [np.hypot(((found[i, 0] - ref[j, 0] + 180) % 360 - 180) * np.cos(np.deg2rad(ref[j, 1])),
                             found[i, 1] - ref[j, 1]) * 60 for i, j in pairs]  # PyBDSF's RA may be negative
            anchors, shifts = anchor_shifts(deep, found, ref, pairs)
            loo = loo_residuals(anchors, shifts) * deep.pixel_deg * 60
            plot_offsets(work / QA_FOLDER / DEWARP_PLOT, deep, anchors, shifts, loo)
            raw_rms = float(np.sqrt(np.mean(np.square(seps))))
            loo_rms = float(np.sqrt(np.mean(np.square(loo))))
            if loo_rms >= raw_rms:  # the screen would fit noise, not the ionosphere: positions would get worse
                result = Result(status=f"screen not applied: leave-one-out residual {loo_rms:.2f}' is no better "
                                       f"than the raw offset {raw_rms:.2f}'",
                                n_sources=len(found), n_anchors=len(pairs), rms_offset_arcmin=raw_rms,
                                loo_rms_arcmin=loo_rms, dewarped=[], deep_image=str(deep.path),
                                deep_images=options.deep_images, interval_images=options.interval_images)
            else:
                dx, dy = offset_screen(deep, found, ref, pairs)
                outs = dewarp_all(deep, options.deep_images + options.interval_images, dx, dy)
                result = Result(status="ok", n_sources=len(found), n_anchors=len(pairs), rms_offset_arcmin=raw_rms,
                                loo_rms_arcmin=loo_rms, dewarped=list(outs.values()), deep_image=outs[str(deep.path)],
                                deep_images=[outs[str(Path(p))] for p in options.deep_images],
                                interval_images=[outs[str(Path(p))] for p in options.interval_images])
        write_atomic(work / QA_FOLDER / DEWARP_RECORD, result.model_dump_json(indent=1) + "\n")
    return result

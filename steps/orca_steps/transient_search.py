"""Step ``transient-search``: what changed during the hour? Stokes I differences and a blind Stokes V search.

Stokes I: each 10-min image minus the deep image (constant sources cancel), positive candidates above
``i_sigma``. Stokes V: the deep and 10-min V images themselves (the sky is nearly unpolarised), both
signs above ``v_sigma``. Masked: below ``min_elevation_deg``, discs around the A-team, and around bright
deep-I sources. The noise is a robust rms in boxes. A candidate with an opposite-sign lobe of at least
half its height within ``lobe_beams`` is rejected as a bi-lobed artefact (a shifted or mis-subtracted
source). An optional catalogue CSV only labels candidates. Too many candidates sets a quality flag (also in
``transients/summary.json``, for the QA page).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
from pydantic import BaseModel, Field

from .constants import isot
from .errors import InputError
from .fileio import write_csv, write_atomic
from .logs import step_timer
from .products import TRANSIENTS_FOLDER, TRANSIENT_CANDIDATES, TRANSIENT_SUMMARY
from .photometry import safe_name, save_cutout
from .skyimage import CATALOG_DIR, SkyImage, iter_images, load_image
from .targets import Target, load_targets

COLUMNS = ["id", "kind", "image", "stokes", "time_utc", "ra_deg", "dec_deg", "x", "y", "peak_jy", "rms_jy", "snr",
           "label", "cutout"]


class Options(BaseModel):
    work_dir: str = Field(description="unit work dir; products go to transients/")
    deep_images: list[str] = Field(description=(
        "deep I (required) and deep V images; of several deep I, the one whose beam is closest to the 10-min I "
        "images' is differenced (same weighting and taper)"))
    interval_images: list[str] = Field(description="10-min I and V images")
    catalogue: str | None = Field(None, description="CSV (name, ra, dec) used only to label candidates")
    min_elevation_deg: float = Field(30.0, description="mask below this elevation")
    i_sigma: float = Field(7.0, description="Stokes I difference threshold (local sigma)")
    v_sigma: float = Field(5.0, description="Stokes V threshold (local sigma, both signs)")
    ateam_radius_deg: float = Field(4.0, description="mask radius around each A-team source")
    bright_sigma: float = Field(50.0, description="deep-I sources above this many sigma are masked")
    bright_radius_beams: float = Field(3.0, description="mask radius around bright deep-I sources, in beams")
    rms_box_beams: float = Field(8.0, description="side of the local-rms boxes, in beams")
    lobe_beams: float = Field(3.0, description="look this far for an opposite-sign lobe")
    label_radius_arcmin: float = Field(20.0, description="catalogue match radius for labels")
    max_candidates: int = Field(50, description="more candidates than this sets quality 'too many candidates'")


class Result(BaseModel):
    candidates_csv: str
    deep_i_image: str = Field(description="the deep Stokes I image subtracted from the 10-min ones")
    n_candidates: int
    n_rejected_bilobed: int
    quality: str
    candidates: list[dict]


def row_medians(a: np.ndarray) -> np.ndarray:
    """np.median of each row's finite values (NaN for none), for all rows at once: partition where a row is
    all finite, sort (NaN last) where it is not; the middle pair averaged as np.median does."""
    n = np.isfinite(a).sum(axis=1)
    out = np.full(len(a), np.nan)
    width = a.shape[1]
    full = n == width
    if full.any():
        part = np.partition(a[full], [(width - 1) // 2, width // 2], axis=1)
        out[full] = (part[:, (width - 1) // 2] + part[:, width // 2]) / 2
    some = ~full & (n > 0)
    if some.any():
        ordered, k = np.sort(a[some], axis=1), n[some]
        rows = np.arange(len(k))
        out[some] = (ordered[rows, (k - 1) // 2] + ordered[rows, k // 2]) / 2
    return out


def tile_rms(data: np.ndarray, mask: np.ndarray, box: int) -> np.ndarray:
    """Robust rms (skyimage.robust_std) of the unmasked pixels of each ``box`` x ``box`` tile, one value per
    tile (NaN where a tile is blank). One row of tiles at a time: no full-size temporaries."""
    ny, nx = data.shape
    n_tiles = -(-nx // box)
    out = np.empty((-(-ny // box), n_tiles))
    for row, y0 in enumerate(range(0, ny, box)):
        rows = data[y0:y0 + box].shape[0]
        band = np.full((rows, n_tiles * box), np.nan)
        band[:, :nx] = np.where(mask[y0:y0 + box], np.nan, data[y0:y0 + box])
        tiles = band.reshape(rows, n_tiles, box).transpose(1, 0, 2).reshape(n_tiles, rows * box)
        median = row_medians(tiles)
        out[row] = 1.4826 * row_medians(np.abs(tiles - median[:, None]))
    return out


def local_rms(data: np.ndarray, mask: np.ndarray, box: int) -> np.ndarray:
    """tile_rms repeated to full size."""
    ny, nx = data.shape
    return np.repeat(np.repeat(tile_rms(data, mask, box), box, axis=0), box, axis=1)[:ny, :nx]


def tile_snr(data: np.ndarray, rms: np.ndarray, box: int, mask: np.ndarray) -> np.ndarray:
    """data / rms of its tile, 0 where masked or the rms is not positive; one row of tiles at a time, so
    no full-size rms map is held next to the image (4096^2: 128 MB each)."""
    snr = np.empty(data.shape)
    nx = data.shape[1]
    for row, y0 in enumerate(range(0, data.shape[0], box)):
        r = np.repeat(rms[row], box)[:nx]
        band = snr[y0:y0 + box]
        with np.errstate(divide="ignore", invalid="ignore"):
            np.divide(data[y0:y0 + box], r, out=band)
        np.nan_to_num(band, copy=False)
        band[mask[y0:y0 + box] | ~np.isfinite(r) | (r <= 0)] = 0.0
    return snr


def disc_mask(img: SkyImage, ra_deg, dec_deg, radius_px: float) -> np.ndarray:
    ny, nx = img.data.shape
    mask = np.zeros((ny, nx), dtype=bool)
    xs, ys = img.world_to_pixel(ra_deg, dec_deg)
    r = int(np.ceil(radius_px))
    for x, y in zip(xs, ys):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        xi, yi = int(round(x)), int(round(y))
        y_lo, y_hi, x_lo, x_hi = max(0, yi - r), min(ny, yi + r + 1), max(0, xi - r), min(nx, xi + r + 1)
        if y_lo >= y_hi or x_lo >= x_hi:
            continue
        yy, xx = np.mgrid[y_lo:y_hi, x_lo:x_hi]
        mask[y_lo:y_hi, x_lo:x_hi] |= np.hypot(xx - x, yy - y) <= radius_px
    return mask


def region_peaks(values: np.ndarray, labels: np.ndarray, n: int) -> list[tuple[int, int]]:
    """(y, x) of the largest value in each of the regions 1..n of ``labels``: scipy.ndimage.maximum_position
    on the labelled pixels only (on the whole image it argsorts every pixel, once per call)."""
    from scipy.ndimage import maximum_position

    if not n:
        return []
    inside = np.flatnonzero(labels)
    peaks = maximum_position(values.ravel()[inside], labels.ravel()[inside], range(1, n + 1))
    return [tuple(int(v) for v in np.unravel_index(inside[p[0]], values.shape)) for p in peaks]


def build_mask(deep_i: SkyImage, opts: Options) -> np.ndarray:
    """True where the search is blind: low elevation, A-team discs, bright deep-I sources, blanks."""
    from scipy.ndimage import label

    ateam = json.loads((CATALOG_DIR / "ateam.json").read_text())["sources"]
    from .targets import parse_angle

    mask = ~np.isfinite(deep_i.data) | ~(deep_i.elevation_map() >= opts.min_elevation_deg)
    mask |= disc_mask(deep_i, [parse_angle(s["ra"], "ra") for s in ateam], [parse_angle(s["dec"], "dec") for s in ateam],
                      opts.ateam_radius_deg / deep_i.pixel_deg)
    beam_px = 2 * deep_i.beam_radius_pixels()
    rms = local_rms(deep_i.data, mask, int(max(16, opts.rms_box_beams * beam_px)))
    bright = np.nan_to_num(np.divide(deep_i.data, rms, out=rms), copy=False) > opts.bright_sigma
    labels, n = label(bright)
    if n:
        peaks = region_peaks(deep_i.data, labels, n)
        ra, dec = deep_i.pixel_to_world([p[1] for p in peaks], [p[0] for p in peaks])
        mask |= disc_mask(deep_i, ra, dec, opts.bright_radius_beams * beam_px)
    return mask


def find_candidates(data: np.ndarray, rms: np.ndarray, box: int, mask: np.ndarray, sigma: float,
                    signs: tuple[int, ...], lobe_px: float) -> tuple[list[dict], int]:
    """Peaks of connected regions above ``sigma`` (``rms``: one value per ``box`` tile); bi-lobed ones
    (opposite lobe >= half) are rejected."""
    from scipy.ndimage import label

    snr = tile_snr(data, rms, box, mask)
    found, rejected = [], 0
    r = int(np.ceil(lobe_px))
    for sign in signs:
        signed = snr if sign == 1 else np.negative(snr, out=snr)  # in place: the last use of the + sign
        labels, n = label(signed >= sigma)
        for y, x in region_peaks(signed, labels, n):
            around = data[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1]
            if np.nanmax(-sign * around) >= 0.5 * sign * data[y, x]:
                rejected += 1
                continue
            found.append({"x": x, "y": y, "peak_jy": float(data[y, x]), "rms_jy": float(rms[y // box, x // box]),
                          "snr": float(sign * signed[y, x])})
    return found, rejected


def search_transients(deep_i: SkyImage, images: Iterable[SkyImage], opts: Options, out_dir: Path,
                      catalogue: list[Target]) -> tuple[list[dict], int]:
    """Search each of ``images`` in turn: Stokes I minus ``deep_i``, Stokes V blind (others are skipped).

    ``images`` is iterated once (skyimage.iter_images keeps one, and its difference, in memory at a time)."""
    mask = build_mask(deep_i, opts)
    beam_px = 2 * deep_i.beam_radius_pixels()
    box = int(max(16, opts.rms_box_beams * beam_px))
    rows, rejected = [], 0
    for img in images:
        if img.stokes == "I":
            kind, data, sigma, signs = "I-difference", img.data - deep_i.data, opts.i_sigma, (1,)
        elif img.stokes == "V":
            kind, data, sigma, signs = "V-blind", img.data, opts.v_sigma, (1, -1)
        else:
            continue
        found, rej = find_candidates(data, tile_rms(data, mask, box), box, mask, sigma, signs,
                                     opts.lobe_beams * beam_px)
        rejected += rej
        for c in found:
            ra, dec = img.pixel_to_world(c["x"], c["y"])
            cid = f"c{len(rows) + 1:03d}"
            label = ""
            for t in catalogue:
                sep = np.hypot((t.ra_deg - ra[0] + 180) % 360 - 180, 0) * np.cos(np.deg2rad(dec[0]))
                if np.hypot(sep, t.dec_deg - dec[0]) * 60 <= opts.label_radius_arcmin:
                    label = t.name
                    break
            cut = save_cutout(img, Target(cid, float(ra[0]), float(dec[0])), int(6 * beam_px) + 1,
                              out_dir / "cutouts" / f"{cid}_{safe_name(img.path.stem)}.fits")
            rows.append({"id": cid, "kind": kind, "image": img.path.name, "stokes": img.stokes,
                         "time_utc": isot(img.time_s), "ra_deg": round(float(ra[0]), 5),
                         "dec_deg": round(float(dec[0]), 5), **{k: c[k] for k in ("x", "y")},
                         "peak_jy": round(c["peak_jy"], 4), "rms_jy": round(c["rms_jy"], 4),
                         "snr": round(c["snr"], 2), "label": label, "cutout": str(cut)})
        del data  # before the next image is read
    return rows, rejected


def matched_deep_image(deep_i: list[SkyImage], intervals_i: list[SkyImage]) -> SkyImage:
    """The deep I image whose restoring beam is closest to the 10-min I images' (the first one if unknown)."""
    beams = [img.beam_deg[0] for img in intervals_i if img.beam_deg]
    if not beams or not all(img.beam_deg for img in deep_i):
        return deep_i[0]
    target = float(np.median(beams))
    return min(deep_i, key=lambda img: abs(img.beam_deg[0] - target))


def run(options: Options) -> Result:
    out = Path(options.work_dir) / TRANSIENTS_FOLDER
    with step_timer("transient-search", options.work_dir):
        deeps = [load_image(path, "deep image", with_data=False) for path in options.deep_images]
        intervals = [load_image(p, "10-min image", with_data=False) for p in options.interval_images]
        deep_i = [img for img in deeps if img.stokes == "I"]
        if not deep_i:
            raise InputError(f"transient-search: no Stokes I image among the deep images {options.deep_images}")
        chosen = matched_deep_image(deep_i, [img for img in intervals if img.stokes == "I"])
        deep_v = [img for img in deeps if img.stokes == "V"][-1:]  # the last deep V, if any, searched last
        searched = [img for img in intervals if img.stokes in ("I", "V")] + deep_v
        for img in searched:
            if img.shape != chosen.shape:
                raise InputError(f"{img.path}: shape {img.shape} differs from the deep image {chosen.shape}")
        catalogue = load_targets(options.catalogue) if options.catalogue else []
        images = iter_images([img.path for img in searched])
        rows, rejected = search_transients(load_image(chosen.path, "deep image"), images, options, out, catalogue)
        csv_path = write_csv(out / TRANSIENT_CANDIDATES, rows, COLUMNS)
    quality = "too many candidates" if len(rows) > options.max_candidates else "ok"
    result = Result(candidates_csv=str(csv_path), deep_i_image=str(chosen.path), n_candidates=len(rows),
                    n_rejected_bilobed=rejected,
                    quality=quality, candidates=rows[: options.max_candidates])
    write_atomic(out / TRANSIENT_SUMMARY, result.model_dump_json(indent=1, exclude={"candidates"}) + "\n")
    return result

"""Step ``photometry``: flux of known targets (CSV lists) and solar-system bodies in every science image.

For each target above ``min_elevation_deg`` and each image (deep and 10-min, Stokes I and V, dewarped
and PB-corrected ones preferred by the caller): the value at the position, the peak (largest |value|)
within a beam-plus-ionosphere radius, and the robust rms in an annulus with confusers masked. A peak of
``detection_sigma`` or more, in a Stokes the target asks for, is a detection: its cutout is copied to
``detections/``. Writes ``photometry/<target>.csv`` and ``.png`` and ``photometry/summary.csv``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

import numpy as np
from pydantic import BaseModel, Field

from .constants import isot
from .errors import InputError
from .fileio import write_csv
from .logs import step_timer
from .products import DETECTIONS_FOLDER, PHOTOMETRY_FOLDER, PHOTOMETRY_SUMMARY
from .skyimage import SkyImage, iter_images, load_image, robust_std
from .targets import Target, load_targets, solar_system_targets

COLUMNS = ["target", "kind", "image", "stokes", "time_utc", "elevation_deg", "flux_at_position_jy", "peak_jy",
           "peak_ra_deg", "peak_dec_deg", "rms_jy", "snr", "detected", "status"]


class Options(BaseModel):
    work_dir: str = Field(description="unit work dir; products go to photometry/ and detections/")
    target_lists: list[str] | None = Field(None, description="target CSV files (name, ra, dec[, stokes, confusers])")
    deep_images: list[str] = Field(description="deep images (Stokes I and V), dewarped/PB-corrected preferred")
    interval_images: list[str] = Field(default_factory=list, description="10-min images (Stokes I and V)")
    solar_system: bool = Field(True, description="also measure the Moon and planets")
    min_elevation_deg: float = Field(30.0, description="skip a target below this elevation at the image time")
    detection_sigma: float = Field(5.0, description="peak/rms for a detection")
    ionosphere_arcmin: float = Field(10.0, description="search radius added to half the beam FWHM")
    annulus_beams: tuple[float, float] = Field((3.0, 6.0), description="noise annulus radii in beam FWHM")


class Result(BaseModel):
    summary_csv: str
    n_targets: int
    n_measurements: int
    detections: list[dict]


def measure(img: SkyImage, target: Target, radius_px: float, annulus_px: tuple[float, float]) -> dict:
    """Flux at the position, signed peak within ``radius_px``, annulus rms (confusers masked)."""
    from scipy.ndimage import map_coordinates

    x, y = (float(v[0]) for v in img.world_to_pixel(target.ra_deg, target.dec_deg))
    r_out = int(np.ceil(annulus_px[1])) + 1
    if not img.inside(x, y, margin=r_out):
        return {"status": "outside image"}
    xi, yi = int(round(x)), int(round(y))
    cut = img.data[yi - r_out: yi + r_out + 1, xi - r_out: xi + r_out + 1]
    yy, xx = np.mgrid[yi - r_out: yi + r_out + 1, xi - r_out: xi + r_out + 1]
    r = np.hypot(xx - x, yy - y)
    annulus = (r >= annulus_px[0]) & (r <= annulus_px[1])
    if target.confusers:
        cx, cy = img.world_to_pixel([c[0] for c in target.confusers], [c[1] for c in target.confusers])
        for px, py in zip(cx, cy):
            annulus &= np.hypot(xx - px, yy - py) > annulus_px[0] / 2
    inner = (r <= radius_px) & np.isfinite(cut)
    if not inner.any():
        return {"status": "blanked"}
    k = np.argmax(np.where(inner, np.abs(cut), -np.inf))
    peak = float(cut.flat[k])
    peak_ra, peak_dec = img.pixel_to_world(xx.flat[k], yy.flat[k])
    rms = robust_std(cut[annulus])
    # bilinear at (x, y) from the cutout (blanks as 0): the same four pixels as from the whole image
    at = float(map_coordinates(np.nan_to_num(cut), [[y - (yi - r_out)], [x - (xi - r_out)]], order=1)[0])
    return {"status": "ok", "flux_at_position_jy": round(at, 5), "peak_jy": round(peak, 5),
            "peak_ra_deg": round(float(peak_ra[0]), 5), "peak_dec_deg": round(float(peak_dec[0]), 5),
            "rms_jy": round(rms, 5), "snr": round(peak / rms, 2) if rms > 0 else float("nan")}


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "target"


def save_cutout(img: SkyImage, target: Target, size_px: int, path: Path) -> Path:
    from astropy.io import fits
    from astropy.nddata import Cutout2D

    x, y = (float(v[0]) for v in img.world_to_pixel(target.ra_deg, target.dec_deg))
    cut = Cutout2D(img.data, (x, y), size_px, wcs=img.wcs, mode="partial", fill_value=np.nan)
    header = cut.wcs.to_header()
    for key in ("DATE-OBS", "BMAJ", "BMIN", "BPA", "BUNIT"):
        if key in img.header:
            header[key] = img.header[key]
    header["OBJECT"] = target.name
    header["ORIGIMG"] = img.path.name
    path.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(cut.data.astype(np.float32), header=header).writeto(path, overwrite=True)
    return path


def plot_target(path: Path, target: Target, cutouts: list[tuple[str, np.ndarray]]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(cutouts), figsize=(2.6 * len(cutouts), 2.8), squeeze=False)
    for ax, (label, data) in zip(axes[0], cutouts):
        ax.imshow(data, origin="lower", cmap="viridis")
        ax.set_title(label, fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(target.name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def target_photometry(images: Iterable[SkyImage], targets: list[Target], out_dir: Path,
                      min_elevation_deg: float = 30.0, detection_sigma: float = 5.0, ionosphere_arcmin: float = 10.0,
                      annulus_beams: tuple[float, float] = (3.0, 6.0)) -> tuple[list[dict], list[dict]]:
    """Measure every target in every image; write per-target CSV/PNG and detection cutouts.

    ``images`` is iterated once, image by image (skyimage.iter_images keeps one in memory at a time);
    rows come out target by target, as the CSVs are written."""
    rows = {k: [] for k in range(len(targets))}
    cutouts = {k: [] for k in range(len(targets))}
    detections = {k: [] for k in range(len(targets))}
    for img in images:
        stokes = img.stokes
        fwhm_px = 2 * img.beam_radius_pixels()
        radius = fwhm_px / 2 + ionosphere_arcmin / 60 / img.pixel_deg
        annulus = (annulus_beams[0] * fwhm_px, annulus_beams[1] * fwhm_px)
        time_utc = isot(img.time_s)
        for k, target in enumerate(targets):
            el = float(img.elevation_deg(target.ra_deg, target.dec_deg))
            row = {"target": target.name, "kind": target.kind, "image": img.path.name, "stokes": stokes,
                   "time_utc": time_utc, "elevation_deg": round(el, 2)}
            row.update(measure(img, target, radius, annulus) if el >= min_elevation_deg
                       else {"status": f"below {min_elevation_deg:g} deg"})
            row["detected"] = bool(row["status"] == "ok" and stokes in target.stokes
                                   and abs(row["snr"]) >= detection_sigma)
            if row["status"] == "ok" and len(cutouts[k]) < 4:
                size = int(2 * annulus[1]) + 1
                x, y = (int(round(float(v[0]))) for v in img.world_to_pixel(target.ra_deg, target.dec_deg))
                cutouts[k].append((f"{stokes} {img.path.stem[-24:]}", img.data[y - size // 2: y + size // 2 + 1,
                                                                               x - size // 2: x + size // 2 + 1].copy()))
            if row["detected"]:
                cut = save_cutout(img, target, int(2 * annulus[1]) + 1,
                                  out_dir.parent / DETECTIONS_FOLDER / f"{safe_name(target.name)}_{img.path.stem}.fits")
                detections[k].append({"target": target.name, "image": img.path.name, "stokes": stokes,
                                      "snr": row["snr"], "peak_jy": row["peak_jy"], "cutout": str(cut)})
            rows[k].append({c: row.get(c, "") for c in COLUMNS})
    for k, target in enumerate(targets):
        if any(r["status"] == "ok" for r in rows[k]):
            write_csv(out_dir / f"{safe_name(target.name)}.csv", rows[k], COLUMNS)
            plot_target(out_dir / f"{safe_name(target.name)}.png", target, cutouts[k])
    return [r for k in rows for r in rows[k]], [d for k in detections for d in detections[k]]


def run(options: Options) -> Result:
    work = Path(options.work_dir)
    out = work / PHOTOMETRY_FOLDER
    with step_timer("photometry", options.work_dir):
        if not options.deep_images:
            raise InputError("photometry: no deep image given (--deep-images)")
        for path in options.deep_images:  # every input checked before the first is measured
            load_image(path, "deep image", with_data=False)
        for path in options.interval_images:
            load_image(path, "10-min image", with_data=False)
        targets = [t for path in options.target_lists or [] for t in load_targets(path)]
        if options.solar_system:
            targets += solar_system_targets(load_image(options.deep_images[0], with_data=False).time_s)
        images = iter_images(options.deep_images + options.interval_images)
        rows, detections = target_photometry(images, targets, out, options.min_elevation_deg, options.detection_sigma,
                                             options.ionosphere_arcmin, tuple(options.annulus_beams))
        summary = write_csv(out / PHOTOMETRY_SUMMARY, rows, COLUMNS)
    return Result(summary_csv=str(summary), n_targets=len(targets),
                  n_measurements=sum(r["status"] == "ok" for r in rows), detections=detections)

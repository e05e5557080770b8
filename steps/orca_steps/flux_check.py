"""Step ``flux-check``: is the hour's flux scale right? Fit the standard calibrators in the deep I image.

Each calibrator above ``min_elevation_deg`` is fitted with a 2-D Gaussian plus a constant (astropy
modelling); a fitted peak under ``min_snr`` times the image's inner rms is "not detected" (a fit to noise
or sidelobes says nothing about the flux scale). A detected calibrator's integrated flux is compared with the published spectrum (Scaife & Heald 2012;
Perley & Butler 2017 for 3C123, see ``catalogs/calibrators.json``). Writes ``QA/flux_check.csv``, a
plot, and ``QA/image_noise.csv`` (robust rms of the inner box of the deep I image and of every deep image
given as ``noise_images``, Stokes I and V).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .errors import InputError
from .fileio import write_csv
from .logs import step_timer
from .products import FLUX_CHECK_CSV, FLUX_CHECK_PLOT, IMAGE_NOISE_CSV, QA_FOLDER
from .skyimage import SkyImage, inner_rms, load_calibrators, load_image, spectrum_jy

FLUX_COLUMNS = ["name", "ra_deg", "dec_deg", "elevation_deg", "freq_mhz", "expected_jy", "peak_jy_beam",
                "integrated_jy", "ratio", "offset_arcmin", "status"]


class Options(BaseModel):
    deep_image: str = Field(description="deep Stokes I image (PB-corrected preferred)")
    noise_images: list[str] = Field(default_factory=list, description=(
        "further deep images (Stokes I and V) whose inner rms goes to QA/image_noise.csv"))
    work_dir: str = Field(description="unit work dir; products go to <work_dir>/QA/")
    min_elevation_deg: float = Field(20.0, description="fit only calibrators above this elevation")
    min_snr: float = Field(5.0, description="a fitted peak below this many times the inner rms is not a detection")
    catalogue: str | None = Field(None, description="calibrator JSON (default: the bundled published spectra)")
    noise_box: int = Field(1024, description="side (pixels) of the central box for the noise rms")


class Result(BaseModel):
    flux_csv: str
    noise_csv: str
    plot: str | None
    n_fitted: int
    median_ratio: float | None
    rms_i_jy: float = Field(description="inner rms of the fitted deep I image")
    rms_v_jy: float | None = Field(description="inner rms of the first deep V image among noise_images")


def fit_source(img: SkyImage, ra_deg: float, dec_deg: float) -> dict:
    """Gaussian + constant fit in a box of 3 beam FWHM around the position, started from the restoring beam."""
    from astropy.modeling import fitting, models

    x0, y0 = (float(v[0]) for v in img.world_to_pixel(ra_deg, dec_deg))
    bmaj, bmin, bpa = img.beam_deg or (img.pixel_deg * 2, img.pixel_deg * 2, 0.0)
    s_maj, s_min = bmaj / img.pixel_deg / 2.3548, bmin / img.pixel_deg / 2.3548
    half = int(np.ceil(3 * 2.3548 * s_maj / 2)) + 2
    if not img.inside(x0, y0, margin=half):
        return {"status": "outside image"}
    xi, yi = int(round(x0)), int(round(y0))
    cut = img.data[yi - half: yi + half + 1, xi - half: xi + half + 1]
    if not np.isfinite(cut).all():
        return {"status": "blanked"}
    yy, xx = np.mgrid[yi - half: yi + half + 1, xi - half: xi + half + 1]
    reach = max(2.0, 2.3548 * s_min)  # the fitted centre stays within a beam of the catalogue position
    near = np.hypot(xx - x0, yy - y0) <= reach
    peak = float(cut[near].max())
    # start from the restoring beam: major axis at BPA (north through east), i.e. 90 + BPA from +x (RA left)
    bounds = {"x_stddev": (0.5 * s_min, 3 * s_maj), "y_stddev": (0.5 * s_min, 3 * s_maj),
              "x_mean": (x0 - reach, x0 + reach), "y_mean": (y0 - reach, y0 + reach)}
    model = (models.Gaussian2D(peak, x0, y0, s_maj, s_min, np.deg2rad(90.0 + bpa), bounds=bounds)
             + models.Const2D(0.0))
    fit = fitting.TRFLSQFitter()(model, xx, yy, cut)
    g = fit[0]
    integrated = 2 * np.pi * g.amplitude.value * abs(g.x_stddev.value * g.y_stddev.value) / img.beam_area_pixels()
    ra_fit, dec_fit = img.pixel_to_world(g.x_mean.value, g.y_mean.value)
    offset = np.hypot((ra_fit[0] - ra_deg) * np.cos(np.deg2rad(dec_deg)), dec_fit[0] - dec_deg) * 60
    return {"status": "ok", "peak_jy_beam": round(float(g.amplitude.value), 4),
            "integrated_jy": round(float(integrated), 4), "offset_arcmin": round(float(offset), 3)}


def check_flux_scale(img: SkyImage, calibrators: list[dict], min_elevation_deg: float = 20.0,
                     noise_jy: float | None = None, min_snr: float = 5.0) -> list[dict]:
    """One row per calibrator: expected vs fitted flux; ``status`` says why a row has no ratio."""
    rows = []
    for cal in calibrators:
        el = float(img.elevation_deg(cal["ra_deg"], cal["dec_deg"]))
        row = {"name": cal["name"], "ra_deg": round(cal["ra_deg"], 5), "dec_deg": round(cal["dec_deg"], 5),
               "elevation_deg": round(el, 2), "freq_mhz": round(img.freq_hz / 1e6, 4),
               "expected_jy": round(spectrum_jy(cal, img.freq_hz), 3)}
        fitted = fit_source(img, cal["ra_deg"], cal["dec_deg"]) if el >= min_elevation_deg else {
            "status": f"below {min_elevation_deg:g} deg"}
        if fitted["status"] == "ok" and noise_jy and fitted["peak_jy_beam"] < min_snr * noise_jy:
            fitted["status"] = f"not detected (peak {fitted['peak_jy_beam']:.3g} < {min_snr:g} x rms {noise_jy:.3g})"
        row.update(fitted)
        if fitted["status"] == "ok":
            row["ratio"] = round(fitted["integrated_jy"] / row["expected_jy"], 4)
        rows.append({k: row.get(k, "") for k in FLUX_COLUMNS})
    return rows



def plot_ratios(path: Path, rows: list[dict]) -> Path | None:
    ok = [r for r in rows if r["status"] == "ok"]
    if not ok:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar([r["name"] for r in ok], [r["ratio"] for r in ok], color="tab:blue")
    ax.axhline(1.0, color="k", lw=1)
    ax.axhspan(0.9, 1.1, color="tab:green", alpha=0.15)
    ax.set_ylabel("measured / published flux")
    ax.set_title(f"Flux check at {ok[0]['freq_mhz']:.2f} MHz")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def run(options: Options) -> Result:
    qa = Path(options.work_dir) / QA_FOLDER
    with step_timer("flux-check", options.work_dir):
        img = load_image(options.deep_image, "deep Stokes I image")
        others = [load_image(p, "deep image") for p in options.noise_images if Path(p) != Path(options.deep_image)]
        noise = [{"image": str(i.path), "stokes": i.stokes, "inner_rms_jy": inner_rms(i, options.noise_box)}
                 for i in [img, *others]]
        rms_i = noise[0]["inner_rms_jy"]
        rows = check_flux_scale(img, load_calibrators(options.catalogue), options.min_elevation_deg,
                                rms_i if np.isfinite(rms_i) else None, options.min_snr)
        flux_csv = write_csv(qa / FLUX_CHECK_CSV, rows, FLUX_COLUMNS)
        plot = plot_ratios(qa / FLUX_CHECK_PLOT, rows)
        rms_v = next((n["inner_rms_jy"] for n in noise if n["stokes"] == "V"), None)
        noise_csv = write_csv(qa / IMAGE_NOISE_CSV, noise, ["image", "stokes", "inner_rms_jy"])
    ratios = [r["ratio"] for r in rows if r["status"] == "ok"]
    if not np.isfinite(rms_i):
        raise InputError(f"{img.path}: the inner box of the deep I image is all blank")
    return Result(flux_csv=str(flux_csv), noise_csv=str(noise_csv), plot=str(plot) if plot else None,
                  n_fitted=len(ratios), median_ratio=float(np.median(ratios)) if ratios else None,
                  rms_i_jy=rms_i, rms_v_jy=rms_v)

"""Synthetic WSClean-like FITS images with exact truth: point sources convolved with a Gaussian beam.

For the science steps' unit tests, where the question is "does the step measure what is in the image"
rather than "does imaging work": 4-D (RA, Dec, FREQ, STOKES) SIN images centred on the zenith, with
BMAJ/BMIN/BPA, DATE-OBS and beam-correlated Gaussian noise of a given rms.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

MJD_UNIX_OFFSET_S = 3506716800.0


def gaussian_beam_image(shape: tuple[int, int], x: float, y: float, flux: float, sigma_px: float) -> np.ndarray:
    ny, nx = shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    return flux * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma_px**2))


def correlated_noise(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float, rms: float) -> np.ndarray:
    """White noise smoothed by the beam, scaled to ``rms``: neighbouring pixels correlate as in an image."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.normal(size=shape), sigma_px, mode="wrap")
    return noise * (rms / noise.std()) if rms > 0 else noise * 0.0


def make_header(centre_deg: tuple[float, float], size: int, scale_deg: float, freq_hz: float, time_s: float,
                beam_fwhm_deg: float, stokes: str = "I"):
    from astropy.io import fits

    h = fits.Header()
    h["NAXIS"] = 4
    for k, n in zip((1, 2, 3, 4), (size, size, 1, 1)):
        h[f"NAXIS{k}"] = n
    h["CTYPE1"], h["CRPIX1"], h["CRVAL1"], h["CDELT1"], h["CUNIT1"] = "RA---SIN", size // 2 + 1, centre_deg[0], -scale_deg, "deg"
    h["CTYPE2"], h["CRPIX2"], h["CRVAL2"], h["CDELT2"], h["CUNIT2"] = "DEC--SIN", size // 2 + 1, centre_deg[1], scale_deg, "deg"
    h["CTYPE3"], h["CRPIX3"], h["CRVAL3"], h["CDELT3"], h["CUNIT3"] = "FREQ", 1, freq_hz, 4.59e6, "Hz"
    h["CTYPE4"], h["CRPIX4"], h["CRVAL4"], h["CDELT4"] = "STOKES", 1, {"I": 1, "Q": 2, "U": 3, "V": 4}[stokes], 1
    h["BMAJ"], h["BMIN"], h["BPA"] = beam_fwhm_deg, beam_fwhm_deg, 0.0
    h["BUNIT"] = "JY/BEAM"
    h["DATE-OBS"] = datetime.fromtimestamp(time_s - MJD_UNIX_OFFSET_S, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")
    h["EQUINOX"], h["RADESYS"] = 2000.0, "FK5"
    return h


def write_sky_image(path: str | Path, sources: list[dict], centre_deg: tuple[float, float], time_s: float,
                    freq_hz: float = 75.4e6, size: int = 256, scale_deg: float = 0.25, beam_fwhm_deg: float = 1.0,
                    noise_jy: float = 0.0, stokes: str = "I", seed: int = 0) -> Path:
    """Write an image of ``sources`` (dicts with ra_deg, dec_deg and flux_jy, the peak in Jy/beam).

    Positions go through the image WCS, so the truth is exact; noise is beam-correlated with rms ``noise_jy``.
    """
    from astropy.io import fits
    from astropy.wcs import WCS

    header = make_header(centre_deg, size, scale_deg, freq_hz, time_s, beam_fwhm_deg, stokes)
    wcs = WCS(header).celestial
    sigma_px = beam_fwhm_deg / scale_deg / 2.3548
    rng = np.random.default_rng(seed)
    data = correlated_noise(rng, (size, size), sigma_px, noise_jy)
    for src in sources:
        x, y = wcs.all_world2pix([src["ra_deg"]], [src["dec_deg"]], 0)
        if np.isfinite(x[0]) and np.isfinite(y[0]):
            data += gaussian_beam_image(data.shape, float(x[0]), float(y[0]), src["flux_jy"], sigma_px)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fits.PrimaryHDU(data.astype(np.float32).reshape(1, 1, size, size), header=header).writeto(p, overwrite=True)
    return p

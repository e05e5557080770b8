"""Step ``pb-correct``: divide science images by the primary beam, from an H5 beam model of orca's schema.

The beam file holds E-fields of the X and Y dipoles on a (frequency, theta = zenith angle, phi = azimuth)
grid: ``freq_Hz``, ``theta_pts``, ``phi_pts`` (degrees), ``X_pol_Efields/{etheta,ephi}`` and
``Y_pol_Efields/{etheta,ephi}``. The Stokes I response is the sum of the four |E|^2, normalised at zenith,
interpolated linearly in frequency, theta and phi.

Every pixel's azimuth and elevation at the image's mid-time (``DATE-AVG``, else ``DATE-OBS``) comes from
``coords.altaz_deg``: one rotation J2000 -> local east/north/up fitted to casacore's AZELGEO directions (the measures the
simulator and WSClean use); what a rotation cannot hold (annual aberration, < 30") is far below a pixel.
Pixels below 10 deg elevation or with a response under 5 % become NaN. Output: ``<image>.pbcorr.fits``
next to each image, with ``PBCORR = T`` in its header.
"""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import config
from .constants import mjd_seconds
from .coords import altaz_deg
from .errors import InputError
from .fileio import atomic_path
from .logs import get_logger, log, step_timer
from .wsclean import site_recipes

MIN_ELEVATION_DEG = 10.0
MIN_RESPONSE = 0.05
BEAM_FREQ_MARGIN = 0.03  # an image this far (relative) beyond the beam file's frequencies uses its end plane
BEAM_KEYS = ("freq_Hz", "theta_pts", "phi_pts", "X_pol_Efields/etheta", "X_pol_Efields/ephi",
             "Y_pol_Efields/etheta", "Y_pol_Efields/ephi")
REFERENCE_DEEP_I = "I-Deep-Taper-Robust-0.75"  # orca's choice for image QA and dewarping
ROWS_PER_CHUNK = 256  # image rows per vectorised block: bounds memory on 4096^2 images
BEAM_GRID_DEG = 0.5  # spacing of the exactly computed points the beam map is interpolated from

_logger = get_logger("pb-correct")


class Options(BaseModel):
    work_dir: str = Field(description="NVMe work dir of the unit; corrects the science images under it")
    beam: str | None = Field(None, description="H5 beam model (default: the site's beam_model)")
    images: list[str] | None = Field(None, description="correct these FITS images instead of the science images")


class Result(BaseModel):
    corrected: list[str] = Field(description="every corrected image")
    deep_images: list[str] = Field(description="corrected deep images (Stokes I and V)")
    interval_images: list[str] = Field(description="corrected 10-minute images (Stokes I and V)")
    deep_image: str | None = Field(None, description=f"the reference deep Stokes I image ({REFERENCE_DEEP_I})")


# --- The beam ------------------------------------------------------------------------------------
class BeamModel:
    """Stokes I power response of an H5 beam file, normalised at zenith, at one frequency at a time."""

    def __init__(self, path: str | Path):
        import h5py

        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(f"{self.path}: beam model file does not exist")
        try:
            with h5py.File(self.path, "r") as h5:
                missing = [k for k in BEAM_KEYS if k not in h5]
                if missing:
                    raise InputError(f"{self.path}: beam model lacks {', '.join(missing)}")
                self.freqs = np.asarray(h5["freq_Hz"][:], dtype=float).ravel()
                self.theta = np.asarray(h5["theta_pts"][:], dtype=float).ravel()
                self.phi = np.asarray(h5["phi_pts"][:], dtype=float).ravel()
                shape = h5["X_pol_Efields/etheta"].shape
        except OSError as exc:
            raise InputError(f"{self.path}: not a readable HDF5 beam model: {exc}") from exc
        if np.nanmax(np.abs(self.theta)) <= np.pi / 2 + 1e-6:  # stored in radians
            self.theta, self.phi = np.rad2deg(self.theta), np.rad2deg(self.phi)
        expected = (self.freqs.size, self.theta.size, self.phi.size)
        if tuple(shape) != expected:
            raise InputError(f"{self.path}: E-field shape {tuple(shape)} is not (freq, theta, phi) = {expected}")
        self._planes: dict[int, np.ndarray] = {}

    def _plane(self, index: int) -> np.ndarray:
        """Normalised Stokes I response (theta, phi) at frequency ``index``, sorted by theta and phi."""
        if index not in self._planes:
            import h5py

            with h5py.File(self.path, "r") as h5:
                power = sum(np.abs(np.asarray(h5[k][index])) ** 2 for k in BEAM_KEYS[3:])
            order_t, order_p = np.argsort(self.theta), np.argsort(self.phi)
            power = power[order_t][:, order_p]
            zenith = power[0].mean()
            if not zenith > 0:
                raise InputError(f"{self.path}: zero response at zenith at {self.freqs[index] / 1e6:.2f} MHz")
            self._planes[index] = power / zenith
        return self._planes[index]

    def plane_at(self, freq_hz: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(theta grid, phi grid, response) at ``freq_hz``, linear between the two nearest frequencies.

        Just past either end of the file's range the end plane is used; further out is an InputError
        (a 73 MHz beam says nothing about a 28.7 MHz image)."""
        order = np.argsort(self.freqs)
        f = self.freqs[order]
        if not f[0] * (1 - BEAM_FREQ_MARGIN) <= freq_hz <= f[-1] * (1 + BEAM_FREQ_MARGIN):
            raise InputError(f"{self.path}: image frequency {freq_hz / 1e6:.3f} MHz is outside the beam model's "
                             f"{f[0] / 1e6:.3f}-{f[-1] / 1e6:.3f} MHz (by more than {BEAM_FREQ_MARGIN:.0%})")
        k = int(np.clip(np.searchsorted(f, freq_hz), 1, max(1, f.size - 1)))
        if f.size == 1 or freq_hz <= f[0]:
            plane = self._plane(order[0])
        elif freq_hz >= f[-1]:
            plane = self._plane(order[-1])
        else:
            w = (freq_hz - f[k - 1]) / (f[k] - f[k - 1])
            plane = (1 - w) * self._plane(order[k - 1]) + w * self._plane(order[k])
        theta, phi = np.sort(self.theta), np.sort(self.phi)
        if phi[-1] - phi[0] < 360.0:  # close the circle so azimuths past the last column interpolate
            phi = np.append(phi, phi[0] + 360.0)
            plane = np.concatenate([plane, plane[:, :1]], axis=1)
        return theta, phi, plane

    def response(self, freq_hz: float, theta_deg: np.ndarray, phi_deg: np.ndarray) -> np.ndarray:
        """Response at zenith angles and azimuths (degrees); linear interpolation on the grid."""
        from scipy.ndimage import map_coordinates

        theta, phi, plane = self.plane_at(freq_hz)
        phi_deg = phi[0] + np.mod(np.asarray(phi_deg) - phi[0], 360.0)
        ti = np.interp(theta_deg, theta, np.arange(theta.size))
        pi = np.interp(phi_deg, phi, np.arange(phi.size))
        out = map_coordinates(plane, [np.ravel(ti), np.ravel(pi)], order=1, mode="nearest")
        return out.reshape(np.shape(theta_deg))


# --- Pixel directions ----------------------------------------------------------------------------
def celestial_wcs(header):
    """The image's RA/Dec WCS (astropy's date fix-up notes silenced)."""
    import warnings

    from astropy.wcs import WCS, FITSFixedWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)
        return WCS(header).celestial


def pixel_altaz(wcs, x: np.ndarray, y: np.ndarray, time_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (deg) of pixels (0-based x, y arrays) of a sky image; NaN off the sky."""
    ra, dec = wcs.wcs_pix2world(np.asarray(x, dtype=float), np.asarray(y, dtype=float), 0)
    return altaz_deg(ra, dec, time_s)


def image_time(header, path: Path) -> float:
    """MJD seconds (UTC) of an image: its mid-time DATE-AVG, else DATE-OBS."""
    text = header.get("DATE-AVG") or header.get("DATE-OBS")
    if not text:
        raise InputError(f"{path}: image has neither DATE-AVG nor DATE-OBS")
    try:
        t = datetime.fromisoformat(str(text)).replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise InputError(f"{path}: unreadable image time {text!r}") from exc
    return mjd_seconds(t)


def image_frequency(header, path: Path) -> float:
    for axis in range(1, header.get("NAXIS", 0) + 1):
        if str(header.get(f"CTYPE{axis}", "")).startswith("FREQ"):
            return float(header[f"CRVAL{axis}"])
    raise InputError(f"{path}: image has no FREQ axis")


def _grid(n: int, step: int) -> np.ndarray:
    """Every ``step``-th pixel index, always including the last."""
    return np.unique(np.append(np.arange(0, n, step), n - 1))


def beam_map(beam: BeamModel, header, time_s: float, freq_hz: float) -> np.ndarray:
    """Response per pixel (2-D), NaN where the correction is not trusted (low elevation or response).

    Elevation and response are smooth on the sky, so they are computed exactly on a grid of points
    BEAM_GRID_DEG apart and interpolated (bilinearly) to every pixel: millions of pixels cost a few
    thousand coordinate transformations.
    """
    from scipy.ndimage import map_coordinates

    ny, nx = header["NAXIS2"], header["NAXIS1"]
    wcs = celestial_wcs(header)
    step = max(1, int(BEAM_GRID_DEG / abs(float(header["CDELT2"]))))
    gy, gx = _grid(ny, step), _grid(nx, step)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    az, el = pixel_altaz(wcs, xx, yy, time_s)
    coarse = np.stack([el, beam.response(freq_hz, 90.0 - el, az)])
    fx = np.interp(np.arange(nx), gx, np.arange(gx.size))
    out = np.empty((ny, nx), dtype=np.float32)
    for start in range(0, ny, ROWS_PER_CHUNK):
        rows = np.arange(start, min(ny, start + ROWS_PER_CHUNK))
        fy = np.interp(rows, gy, np.arange(gy.size))
        cy, cx = np.meshgrid(fy, fx, indexing="ij")
        el_f, resp_f = (map_coordinates(c, [cy.ravel(), cx.ravel()], order=1, cval=np.nan).reshape(cy.shape)
                        for c in coarse)
        bad = ~(el_f >= MIN_ELEVATION_DEG) | ~(resp_f >= MIN_RESPONSE)
        out[rows] = np.where(bad, np.nan, resp_f)
    return out


def pb_correct_image(path: str | Path, beam: BeamModel, cache: dict | None = None) -> Path:
    """Write ``<path minus .fits>.pbcorr.fits``: the image divided by the beam at its mid-time."""
    from astropy.io import fits

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: image does not exist")
    with fits.open(path) as hdul:
        header, data = hdul[0].header.copy(), np.asarray(hdul[0].data, dtype=np.float32)
    if header.get("PBCORR") is True:
        raise InputError(f"{path}: image is already primary-beam corrected")
    time_s, freq = image_time(header, path), image_frequency(header, path)
    # the map depends on the sky geometry only: I and V, or deep images of other weightings, share it
    key = ((header["NAXIS1"], header["NAXIS2"], celestial_wcs(header).to_header_string(), time_s, freq)
           if cache is not None else None)
    response = cache.get(key) if cache is not None else None
    if response is None:
        response = beam_map(beam, header, time_s, freq)
        if cache is not None:
            cache[key] = response
    corrected = data / response  # broadcasts over leading (Stokes, frequency) axes
    header["PBCORR"] = (True, "divided by the Stokes I primary beam")
    header["PBBEAM"] = (beam.path.name, "beam model file")
    header["PBMINEL"] = (MIN_ELEVATION_DEG, "[deg] NaN below this elevation")
    header["PBMINRSP"] = (MIN_RESPONSE, "NaN where the response is below this")
    out = path.with_name(path.name[: -len(".fits")] + ".pbcorr.fits")
    with atomic_path(out) as tmp:
        fits.writeto(tmp, corrected, header)
    return out


def science_images_in(work_dir: str | Path) -> list[Path]:
    """The restored images of the science recipes under ``work_dir`` (not yet corrected ones)."""
    folders = sorted({r.folder for r in site_recipes().science})
    found = []
    for folder in folders:
        found += sorted((Path(work_dir) / folder).glob("*-image.fits"))
    return found


def pb_correct(images: list[str | Path], beam_path: str | Path) -> list[Path]:
    """Correct each image; images sharing geometry, time and frequency share one beam map."""
    beam, cache = BeamModel(beam_path), {}
    out = [pb_correct_image(p, beam, cache) for p in images]
    log(_logger, "primary-beam corrected", images=len(out), beam=str(beam_path))
    return out


def run(options: Options) -> Result:
    images = options.images if options.images is not None else science_images_in(options.work_dir)
    with step_timer("pb-correct", options.work_dir, images=len(images)):
        corrected = pb_correct(images, options.beam or config.site().beam_model)
    deep = [str(p) for p in corrected if p.parent.name == "deep"]
    reference = [p for p in deep if f"-{REFERENCE_DEEP_I}-" in Path(p).name]
    return Result(corrected=[str(p) for p in corrected], deep_images=deep,
                  interval_images=[str(p) for p in corrected if p.parent.name == "10min"],
                  deep_image=reference[0] if reference else None)

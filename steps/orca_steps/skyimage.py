"""FITS sky images as the science steps need them: one 2-D plane, its celestial WCS, frequency, time, beam.

WSClean writes 4-D images (RA, Dec, FREQ, STOKES); the science steps read the first plane and keep
the header so that products (dewarped images, cutouts) carry the same metadata.
"""
from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from .constants import MJD_UNIX_OFFSET_S
from .coords import altaz_deg
from .errors import InputError
from .fileio import atomic_path

CATALOG_DIR = Path(__file__).parent / "catalogs"


@dataclass
class SkyImage:
    path: Path
    data: np.ndarray | None  # (ny, nx) float64, NaN where blank; None when only the header was read
    header: object  # astropy.io.fits.Header of the file
    wcs: object  # celestial astropy.wcs.WCS
    freq_hz: float
    time_s: float  # MJD seconds (DATE-OBS), the convention of the MS TIME column
    beam_deg: tuple[float, float, float] | None  # BMAJ, BMIN (FWHM, deg), BPA (deg)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx) of the plane, known from the header even when only the header was read."""
        return int(self.header["NAXIS2"]), int(self.header["NAXIS1"])

    @property
    def pixel_deg(self) -> float:
        from astropy.wcs.utils import proj_plane_pixel_scales

        return float(proj_plane_pixel_scales(self.wcs)[1])

    @property
    def stokes(self) -> str:
        """'I', 'Q', 'U' or 'V' from the STOKES axis ('I' when there is none)."""
        for k in range(1, self.header.get("NAXIS", 0) + 1):
            if str(self.header.get(f"CTYPE{k}", "")).upper() == "STOKES":
                return {1: "I", 2: "Q", 3: "U", 4: "V"}.get(int(self.header[f"CRVAL{k}"]), "?")
        return "I"

    def beam_area_pixels(self) -> float:
        """Area of the restoring beam in pixels (Jy/beam -> Jy for integrated fluxes)."""
        if self.beam_deg is None:
            raise InputError(f"{self.path}: no BMAJ/BMIN in the header; the beam area is unknown")
        bmaj, bmin, _ = self.beam_deg
        return float(np.pi * bmaj * bmin / (4 * np.log(2)) / self.pixel_deg**2)

    def beam_radius_pixels(self) -> float:
        """Half the beam FWHM in pixels (1 pixel if the beam is unknown)."""
        return max(1.0, 0.5 * self.beam_deg[0] / self.pixel_deg) if self.beam_deg else 1.0

    def world_to_pixel(self, ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.wcs.all_world2pix(np.atleast_1d(ra_deg), np.atleast_1d(dec_deg), 0)
        return np.asarray(x), np.asarray(y)

    def pixel_to_world(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        ra, dec = self.wcs.all_pix2world(np.atleast_1d(x), np.atleast_1d(y), 0)
        return np.asarray(ra) % 360.0, np.asarray(dec)

    def inside(self, x, y, margin: float = 0.0) -> np.ndarray:
        ny, nx = self.data.shape
        x, y = np.asarray(x), np.asarray(y)
        ok = np.isfinite(x) & np.isfinite(y)
        return ok & (x >= margin) & (y >= margin) & (x <= nx - 1 - margin) & (y <= ny - 1 - margin)

    def elevation_deg(self, ra_deg, dec_deg) -> np.ndarray:
        """Elevation (deg) of J2000 directions at the image time."""
        return altaz_deg(ra_deg, dec_deg, self.time_s)[1]

    def elevation_map(self) -> np.ndarray:
        """Elevation (deg) of every pixel; NaN off the projected sphere.

        Computed in bands of rows: the WCS transform of a whole 4096^2 image needs a dozen full-size arrays."""
        ny, nx = self.data.shape
        out = np.empty((ny, nx))
        band = max(1, 2**20 // nx)
        for y0 in range(0, ny, band):
            yy, xx = np.mgrid[y0:min(ny, y0 + band), 0:nx]
            ra, dec = self.wcs.all_pix2world(xx.ravel(), yy.ravel(), 0)
            out[y0:y0 + band] = self.elevation_deg(ra, dec).reshape(yy.shape)
        return out


def load_image(path: str | Path, what: str = "image", with_data: bool = True) -> SkyImage:
    """Read a FITS image's first plane; InputError naming the file when it is missing or not an image.

    ``with_data=False`` reads the header only (``data`` is None): enough to choose among large images
    before holding any of them in memory."""
    from astropy.io import fits
    from astropy.time import Time
    from astropy.wcs import WCS, FITSFixedWarning

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: {what} FITS file does not exist")
    try:
        with fits.open(p) as hdul:
            header = hdul[0].header.copy()
            data = np.asarray(hdul[0].data, dtype=np.float64) if with_data else None
    except OSError as exc:
        raise InputError(f"{p}: {what} is not a readable FITS file: {exc}") from exc
    if (data.ndim if with_data else header.get("NAXIS", 0)) < 2:
        raise InputError(f"{p}: {what} has no 2-D image data (NAXIS={header.get('NAXIS')})")
    if with_data:
        data = data.reshape(data.shape[-2:]) if data.size == np.prod(data.shape[-2:]) else data[(0,) * (data.ndim - 2)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # WSClean headers: datfix/unitfix notes, harmless
        wcs = WCS(header).celestial
    if wcs.naxis != 2:
        raise InputError(f"{p}: {what} has no celestial WCS")
    freq = None
    for k in range(1, header.get("NAXIS", 0) + 1):
        if str(header.get(f"CTYPE{k}", "")).upper().startswith("FREQ"):
            freq = float(header[f"CRVAL{k}"])
    freq = freq or header.get("RESTFRQ") or header.get("FREQ")
    if not freq:
        raise InputError(f"{p}: {what} has no frequency axis or RESTFRQ")
    if "DATE-OBS" not in header:
        raise InputError(f"{p}: {what} has no DATE-OBS")
    time_s = float(Time(header["DATE-OBS"], scale="utc").unix) + MJD_UNIX_OFFSET_S
    beam = None
    if "BMAJ" in header and "BMIN" in header:
        beam = (float(header["BMAJ"]), float(header["BMIN"]), float(header.get("BPA", 0.0)))
    return SkyImage(p, data, header, wcs, float(freq), time_s, beam)


def iter_images(paths: list[str | Path], what: str = "image") -> Iterator[SkyImage]:
    """Load each image when it is asked for and drop its pixels when the next one is: one in memory at a
    time (17 images of 4096^2 are 2.3 GB). The pixels are dropped explicitly, and the collector run,
    because the frames of exceptions caught inside astropy (cutouts) keep the last image's arrays in
    reference cycles until it runs: at 4096^2, two of them (256 MB) were still held a few images later."""
    import gc

    for path in paths:
        img = load_image(path, what)
        yield img
        img.data = None
        gc.collect(1)  # the young generations: a full collection costs 70 ms among astropy's objects


def write_image(path: str | Path, like: SkyImage, data: np.ndarray) -> Path:
    """Write ``data`` (ny, nx) with ``like``'s header (same shape as the input file), atomically."""
    from astropy.io import fits

    p = Path(path)
    shape = tuple(like.header[f"NAXIS{k}"] for k in range(like.header["NAXIS"], 0, -1))
    with atomic_path(p) as tmp:
        fits.PrimaryHDU(np.asarray(data, dtype=np.float32).reshape(shape), header=like.header).writeto(tmp)
    return p


def robust_std(values: np.ndarray) -> float:
    """1.4826 * MAD of the finite values (NaN if none): the noise, insensitive to a few sources."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(v - np.median(v))))


def inner_rms(img: SkyImage, box: int = 1024) -> float:
    """Robust rms of the central ``box`` x ``box`` pixels (orca's QA box), NaN-aware."""
    ny, nx = img.data.shape
    hy, hx = min(box, ny) // 2, min(box, nx) // 2
    return robust_std(img.data[ny // 2 - hy: ny // 2 + hy, nx // 2 - hx: nx // 2 + hx])


def load_calibrators(path: str | Path | None = None) -> list[dict]:
    """The calibrator catalogue: name, ra/dec (sexagesimal), TTCal spectrum (freq, S0, index), ref."""
    from astropy.coordinates import Angle

    p = Path(path) if path else CATALOG_DIR / "calibrators.json"
    if not p.is_file():
        raise InputError(f"{p}: calibrator catalogue does not exist")
    try:
        entries = json.loads(p.read_text())["calibrators"]
        out = []
        for e in entries:
            out.append({**e, "ra_deg": float(Angle(e["ra"], unit="hourangle").deg),
                        "dec_deg": float(Angle(e["dec"], unit="deg").deg)})
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{p}: malformed calibrator catalogue: {exc}") from exc
    return out


def spectrum_jy(entry: dict, freq_hz: float) -> float:
    """Flux (Jy) of a catalogue entry at ``freq_hz`` from its TTCal log-polynomial spectrum."""
    x = np.log10(freq_hz / entry["freq"])
    return float(entry["S0"] * 10 ** sum(a * x ** (n + 1) for n, a in enumerate(entry["index"])))


def block_mean(data: np.ndarray, max_side: int) -> tuple[np.ndarray, int]:
    """(image block-averaged by the smallest integer factor that brings it to at most ``max_side`` pixels,
    factor); NaN pixels are left out of each block's mean. For pictures and movies, not for measurement."""
    factor = int(np.ceil(max(data.shape) / max_side))
    if factor <= 1:
        return data, 1
    ny, nx = (s // factor * factor for s in data.shape)
    blocks = data[:ny, :nx].reshape(ny // factor, factor, nx // factor, factor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-blank block is NaN, as it should be
        return np.nanmean(blocks, axis=(1, 3)), factor

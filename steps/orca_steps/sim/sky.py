"""The simulated sky: the A-team as in orca's model, faint field sources, and a ground RFI emitter."""
from __future__ import annotations

import numpy as np

from ..config import OVRO_HEIGHT_M, OVRO_LAT_DEG, OVRO_LON_DEG
from ..skymodel import Component, RFISource, SkySource

REF_FREQ_HZ = 73.8e6


def _radec(ra: str, dec: str) -> tuple[float, float]:
    from astropy.coordinates import Angle

    return float(Angle(ra, unit="hourangle").rad), float(Angle(dec, unit="deg").rad)


def _offset(ra: float, dec: float, east_arcsec: float, north_arcsec: float) -> tuple[float, float]:
    a = np.pi / 180 / 3600
    return ra + east_arcsec * a / np.cos(dec), dec + north_arcsec * a


def a_team() -> list[SkySource]:
    """Cyg A (2 Gaussians), Cas A (3 Gaussians), Vir A (point), fluxes near 74 MHz."""
    cyg = _radec("19h59m28.36s", "+40d44m02.1s")
    cas = _radec("23h23m24.0s", "+58d48m54s")
    vir = _radec("12h30m49.42s", "+12d23m28.0s")
    def gauss(centre, east, north, flux, index, major, minor, pa):
        ra, dec = _offset(*centre, east, north)
        return Component(ra, dec, (flux, 0.0, 0.0, 0.0), REF_FREQ_HZ, index, major, minor, pa)
    return [
        SkySource("Cyg A", [gauss(cyg, -50, 20, 9000.0, [-0.58, -0.1], 40, 25, 110),
                            gauss(cyg, 55, -18, 8500.0, [-0.58, -0.1], 35, 20, 110)]),
        SkySource("Cas A", [gauss(cas, 0, 0, 9000.0, [-0.77], 120, 110, 30),
                            gauss(cas, 60, 40, 4000.0, [-0.77], 60, 50, 0),
                            gauss(cas, -40, -60, 3500.0, [-0.77], 70, 40, 60)]),
        SkySource("Vir A", [Component(*vir, (2100.0, 0.0, 0.0, 0.0), REF_FREQ_HZ, [-0.86])]),
    ]


def field_sources(rng: np.random.Generator, count: int, ra_centre: float, dec_centre: float,
                  radius_deg: float = 25.0, flux_range=(30.0, 120.0)) -> list[SkySource]:
    """Faint point sources scattered around (ra_centre, dec_centre), spectral index -0.7."""
    sources = []
    for k in range(count):
        r = np.deg2rad(radius_deg) * np.sqrt(rng.uniform(0.05, 1.0))
        phi = rng.uniform(0, 2 * np.pi)
        dec = dec_centre + r * np.cos(phi)
        ra = (ra_centre + r * np.sin(phi) / np.cos(dec)) % (2 * np.pi)
        flux = float(rng.uniform(*flux_range))
        sources.append(SkySource(f"field{k:02d}", [Component(ra, dec, (flux, 0, 0, 0), REF_FREQ_HZ, [-0.7])]))
    return sources


def ground_emitter(freqs: np.ndarray, flux_jy: float = 400.0) -> RFISource:
    """A terrestrial emitter about 45 km north-west of the array, with a ripply tabulated spectrum."""
    dist, az = 45e3, np.deg2rad(315.0)
    lat = OVRO_LAT_DEG + np.rad2deg(dist * np.cos(az) / 6371e3)
    lon = OVRO_LON_DEG + np.rad2deg(dist * np.sin(az) / (6371e3 * np.cos(np.deg2rad(OVRO_LAT_DEG))))
    table = np.linspace(freqs.min() - 1e5, freqs.max() + 1e5, 16)
    flux_i = flux_jy * (1.0 + 0.3 * np.sin(np.linspace(0, 3 * np.pi, table.size)))
    return RFISource("OVRO-NW-emitter", lon, lat, OVRO_HEIGHT_M + 150.0, table, flux_i, 0.05 * flux_i)


def calibrators() -> list[SkySource]:
    """The flux-check calibrators at their true positions with their published spectra (points)."""
    from ..skyimage import load_calibrators

    return [SkySource(c["name"], [Component(np.deg2rad(c["ra_deg"]), np.deg2rad(c["dec_deg"]), (c["S0"], 0, 0, 0),
                                            c["freq"], list(c["index"]))]) for c in load_calibrators()]

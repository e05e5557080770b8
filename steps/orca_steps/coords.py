"""Geometry and time at the array, the one implementation every step uses: positions, UVW, sidereal
time, azimuth and elevation (of directions, image pixels and the Sun), zenith, with casacore measures.

casacore is the reference the MS readers (CASA, WSClean, DP3) use, so UVW and J2000 directions
computed here agree with them. Times are MS TIME values: MJD in seconds (UTC). Elevations are
geometric (AZELGEO: no refraction), as astropy's AltAz without pressure.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from .config import OVRO_HEIGHT_M, OVRO_LAT_DEG, OVRO_LON_DEG
from .errors import InputError

# A sky rotation J2000 -> local (east, north, up) is fitted to casacore; what it cannot hold (annual
# aberration, < 30") must stay below this.
MAX_ROTATION_RESIDUAL_ARCSEC = 60.0

WGS84_A = 6378137.0
WGS84_F = 1 / 298.257223563


def geodetic_to_itrf(lon_deg: float, lat_deg: float, height_m: float) -> np.ndarray:
    """WGS84 geodetic -> ITRF (ECEF) metres."""
    lon, lat = np.deg2rad(lon_deg), np.deg2rad(lat_deg)
    e2 = WGS84_F * (2 - WGS84_F)
    n = WGS84_A / np.sqrt(1 - e2 * np.sin(lat) ** 2)
    return np.array([(n + height_m) * np.cos(lat) * np.cos(lon),
                     (n + height_m) * np.cos(lat) * np.sin(lon),
                     (n * (1 - e2) + height_m) * np.sin(lat)])


def enu_to_itrf(enu: np.ndarray, lon_deg: float = OVRO_LON_DEG, lat_deg: float = OVRO_LAT_DEG,
                height_m: float = OVRO_HEIGHT_M) -> np.ndarray:
    """Local east/north/up offsets (n, 3) around a site -> ITRF positions (n, 3)."""
    lon, lat = np.deg2rad(lon_deg), np.deg2rad(lat_deg)
    rot = np.array([[-np.sin(lon), -np.sin(lat) * np.cos(lon), np.cos(lat) * np.cos(lon)],
                    [np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat) * np.sin(lon)],
                    [0.0, np.cos(lat), np.sin(lat)]])
    return geodetic_to_itrf(lon_deg, lat_deg, height_m)[None, :] + np.asarray(enu) @ rot.T


def array_itrf() -> np.ndarray:
    return geodetic_to_itrf(OVRO_LON_DEG, OVRO_LAT_DEG, OVRO_HEIGHT_M)


def _measures_at(time_s: float):
    from casacore.measures import measures
    from casacore.quanta import quantity

    dm = measures()
    dm.do_frame(dm.epoch("UTC", quantity(float(time_s), "s")))
    x, y, z = array_itrf()
    dm.do_frame(dm.position("ITRF", quantity(x, "m"), quantity(y, "m"), quantity(z, "m")))
    return dm, quantity


def zenith_j2000(time_s: float) -> tuple[float, float]:
    """J2000 (ra, dec) in radians of the array's zenith at ``time_s``."""
    dm, q = _measures_at(time_s)
    j2000 = dm.measure(dm.direction("AZELGEO", q(0, "deg"), q(90, "deg")), "J2000")
    return float(j2000["m0"]["value"]) % (2 * np.pi), float(j2000["m1"]["value"])


def altaz(ra: np.ndarray, dec: np.ndarray, time_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (rad) of J2000 directions at ``time_s`` (AZELGEO, as astropy)."""
    dm, q = _measures_at(time_s)
    ra, dec = np.atleast_1d(ra), np.atleast_1d(dec)
    az, el = np.empty(ra.size), np.empty(ra.size)
    for k in range(ra.size):
        d = dm.measure(dm.direction("J2000", q(float(ra[k]), "rad"), q(float(dec[k]), "rad")), "AZELGEO")
        az[k], el[k] = d["m0"]["value"], d["m1"]["value"]
    return az, el


def local_sidereal_hours(time_s):
    """Local apparent sidereal time at the array (hours, 0..24) of one time or an array of times."""
    times = np.atleast_1d(np.asarray(time_s, dtype=float))
    if times.size == 0:
        return np.zeros(0)
    dm, q = _measures_at(times[0])
    hours = np.array([dm.measure(dm.epoch("UTC", q(t, "s")), "LAST")["m0"]["value"] % 1.0 for t in times]) * 24.0
    return float(hours[0]) if np.ndim(time_s) == 0 else hours


def sun_elevation_deg(time_s) -> np.ndarray:
    """Geometric elevation (deg) of the Sun at the array at each of ``time_s``."""
    times = np.atleast_1d(np.asarray(time_s, dtype=float))
    if times.size == 0:
        return np.zeros(0)
    dm, q = _measures_at(times[0])
    sun = dm.direction("SUN")
    out = np.empty(times.size)
    for k, t in enumerate(times):
        dm.do_frame(dm.epoch("UTC", q(t, "s")))
        out[k] = dm.measure(sun, "AZELGEO")["m1"]["value"]
    return np.rad2deg(out)


def _unit_vectors(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    return np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


@lru_cache(maxsize=256)
def j2000_to_enu(time_s: float, n_samples: int = 48) -> np.ndarray:
    """3x3 rotation taking J2000 unit vectors to (east, north, up) at the array at ``time_s``: what makes
    azimuth and elevation of millions of pixels one matrix product.

    Fitted (Kabsch) to casacore AZELGEO directions of points spread over the sky; InputError if the fit
    is worse than MAX_ROTATION_RESIDUAL_ARCSEC anywhere.
    """
    k = np.arange(n_samples) + 0.5
    dec = np.arcsin(1 - 2 * k / n_samples)
    ra = np.mod(np.pi * (1 + 5**0.5) * k, 2 * np.pi)
    az, el = altaz(ra, dec, time_s)
    a = _unit_vectors(ra, dec)
    b = np.stack([np.cos(el) * np.sin(az), np.cos(el) * np.cos(az), np.sin(el)])
    u, _, vt = np.linalg.svd(b @ a.T)
    rot = u @ np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))]) @ vt
    worst = np.rad2deg(np.arccos(np.clip(np.sum((rot @ a) * b, axis=0), -1, 1)).max()) * 3600
    if worst > MAX_ROTATION_RESIDUAL_ARCSEC:
        raise InputError(f"alt-az rotation fit is off by {worst:.0f} arcsec at MJD-s {time_s}")
    rot.setflags(write=False)  # shared by the cache
    return rot


def altaz_deg(ra_deg, dec_deg, time_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth (0..360, east of north) and elevation (deg) of many J2000 directions at ``time_s``,
    vectorised through ``j2000_to_enu`` (within an arcminute of ``altaz``); NaN in, NaN out."""
    ra, dec = np.deg2rad(np.asarray(ra_deg, dtype=float)), np.deg2rad(np.asarray(dec_deg, dtype=float))
    enu = np.tensordot(j2000_to_enu(float(time_s)), _unit_vectors(ra, dec), axes=1)
    el = np.rad2deg(np.arcsin(np.clip(enu[2], -1, 1)))
    az = np.mod(np.rad2deg(np.arctan2(enu[0], enu[1])), 360.0)
    return az, el


def antenna_uvw(ant_itrf: np.ndarray, time_s: float, ra0: float, dec0: float) -> np.ndarray:
    """UVW (n, 3) metres of each antenna relative to the array centre, towards J2000 (ra0, dec0).

    A baseline's UVW is antenna_uvw[ant2] - antenna_uvw[ant1].
    """
    dm, q = _measures_at(time_s)
    dm.do_frame(dm.direction("J2000", q(float(ra0), "rad"), q(float(dec0), "rad")))
    off = np.asarray(ant_itrf, dtype=float) - array_itrf()[None, :]
    b = dm.baseline("ITRF", q(off[:, 0], "m"), q(off[:, 1], "m"), q(off[:, 2], "m"))
    return np.asarray(dm.to_uvw(b)["xyz"].get_value("m"), dtype=float).reshape(-1, 3)


def direction_cosines(ra, dec, ra0: float, dec0: float):
    """l, m, n of J2000 directions relative to the phase centre (ra0, dec0) (SIN projection)."""
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    dra = ra - ra0
    l = np.cos(dec) * np.sin(dra)
    m = np.sin(dec) * np.cos(dec0) - np.cos(dec) * np.sin(dec0) * np.cos(dra)
    n = np.sin(dec) * np.sin(dec0) + np.cos(dec) * np.cos(dec0) * np.cos(dra)
    return l, m, n

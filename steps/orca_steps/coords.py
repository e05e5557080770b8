"""Geometry at the array: positions, UVW, zenith and horizon, with casacore measures.

casacore is the reference the MS readers (CASA, WSClean, DP3) use, so UVW and J2000 directions
computed here agree with them. Times are MS TIME values: MJD in seconds (UTC).
"""
from __future__ import annotations

import numpy as np

from .config import OVRO_HEIGHT_M, OVRO_LAT_DEG, OVRO_LON_DEG

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


def local_sidereal_hours(time_s: float) -> float:
    """Local apparent sidereal time at the array (hours)."""
    dm, q = _measures_at(time_s)
    last = dm.measure(dm.epoch("UTC", q(float(time_s), "s")), "LAST")
    return float(last["m0"]["value"] % 1.0) * 24.0


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

"""The simulator's own geometry: astropy for the Earth's orientation, vectors for the rest.

The steps compute geometry with casacore measures (``orca_steps.coords``); the simulator must not share
that code, or a mistake there would be written into the test data and agree with itself. Here: site and
antenna positions from astropy's WGS84 ``EarthLocation``, directions through astropy's ``AltAz`` and
``FK5(J2000)`` frames, and UVW as the projection of the antennas' GCRS positions on the (u, v, w) axes
of the phase centre (u east, v north, w towards the centre). Times are MS TIME values: MJD seconds (UTC).
"""
from __future__ import annotations

import numpy as np

from ..config import OVRO_HEIGHT_M, OVRO_LAT_DEG, OVRO_LON_DEG


def _astropy():
    """astropy modules, with IERS tables used offline (these machines have no internet)."""
    from astropy import units
    from astropy import coordinates
    from astropy import time
    from astropy.utils import iers

    iers.conf.auto_download = False
    iers.conf.auto_max_age = None
    iers.conf.iers_degraded_accuracy = "warn"
    return units, coordinates, time


def _site():
    u, coords, _ = _astropy()
    return coords.EarthLocation.from_geodetic(OVRO_LON_DEG * u.deg, OVRO_LAT_DEG * u.deg, OVRO_HEIGHT_M * u.m)


def _time(time_s: float):
    _, _, t = _astropy()
    return t.Time(float(time_s) / 86400.0, format="mjd", scale="utc")


def geodetic_to_itrf(lon_deg: float, lat_deg: float, height_m: float) -> np.ndarray:
    """WGS84 geodetic -> ITRF (ECEF) metres, by astropy."""
    u, coords, _ = _astropy()
    loc = coords.EarthLocation.from_geodetic(lon_deg * u.deg, lat_deg * u.deg, height_m * u.m)
    return np.array([loc.x.to_value(u.m), loc.y.to_value(u.m), loc.z.to_value(u.m)])


def site_itrf() -> np.ndarray:
    return geodetic_to_itrf(OVRO_LON_DEG, OVRO_LAT_DEG, OVRO_HEIGHT_M)


def enu_to_itrf(enu: np.ndarray) -> np.ndarray:
    """East/north/up offsets (n, 3) around the array centre -> ITRF (n, 3): the local axes as ECEF unit vectors."""
    lon, lat = np.deg2rad(OVRO_LON_DEG), np.deg2rad(OVRO_LAT_DEG)
    east = np.array([-np.sin(lon), np.cos(lon), 0.0])
    north = np.array([-np.sin(lat) * np.cos(lon), -np.sin(lat) * np.sin(lon), np.cos(lat)])
    up = np.array([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)])
    enu = np.asarray(enu, dtype=float)
    return site_itrf() + enu[:, :1] * east + enu[:, 1:2] * north + enu[:, 2:3] * up


def zenith_j2000(time_s: float) -> tuple[float, float]:
    """J2000 (ra, dec) in radians of the array's zenith at ``time_s``."""
    u, coords, _ = _astropy()
    frame = coords.AltAz(obstime=_time(time_s), location=_site())
    zenith = coords.SkyCoord(az=0 * u.deg, alt=90 * u.deg, frame=frame).transform_to(coords.FK5(equinox="J2000"))
    return float(zenith.ra.rad) % (2 * np.pi), float(zenith.dec.rad)


def altaz(ra, dec, time_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth and elevation (rad) of J2000 directions at ``time_s`` (no refraction)."""
    u, coords, _ = _astropy()
    where = coords.SkyCoord(np.atleast_1d(ra) * u.rad, np.atleast_1d(dec) * u.rad, frame=coords.FK5(equinox="J2000"))
    seen = where.transform_to(coords.AltAz(obstime=_time(time_s), location=_site()))
    return np.asarray(seen.az.rad), np.asarray(seen.alt.rad)


def local_sidereal_hours(time_s: float) -> float:
    """Local apparent sidereal time at the array (hours)."""
    return float(_time(time_s).sidereal_time("apparent", longitude=OVRO_LON_DEG).hour) % 24.0


def uvw_axes(ra0: float, dec0: float) -> np.ndarray:
    """Rows u (east), v (north), w (towards the centre) as unit vectors of the equatorial frame."""
    return np.array([[-np.sin(ra0), np.cos(ra0), 0.0],
                     [-np.sin(dec0) * np.cos(ra0), -np.sin(dec0) * np.sin(ra0), np.cos(dec0)],
                     [np.cos(dec0) * np.cos(ra0), np.cos(dec0) * np.sin(ra0), np.sin(dec0)]])


def antenna_uvw(ant_itrf: np.ndarray, time_s: float, ra0: float, dec0: float) -> np.ndarray:
    """UVW (n, 3) metres of each antenna relative to the array centre, towards J2000 (ra0, dec0).

    A baseline's UVW is antenna_uvw[ant2] - antenna_uvw[ant1]. The antennas' positions in the GCRS (the
    Earth's rotation, precession and nutation applied by astropy) are projected on the centre's axes.
    """
    u, coords, _ = _astropy()
    itrf = np.vstack([site_itrf(), np.asarray(ant_itrf, dtype=float)])
    where = coords.EarthLocation.from_geocentric(itrf[:, 0] * u.m, itrf[:, 1] * u.m, itrf[:, 2] * u.m)
    pos, _ = where.get_gcrs_posvel(_time(time_s))
    xyz = np.stack([pos.x.to_value(u.m), pos.y.to_value(u.m), pos.z.to_value(u.m)], axis=1)
    return (xyz[1:] - xyz[0]) @ uvw_axes(ra0, dec0).T


def direction_cosines(ra, dec, ra0: float, dec0: float):
    """l, m, n of J2000 directions on the centre's (u, v, w) axes."""
    ra, dec = np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    s = np.stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)], axis=-1)
    l, m, n = np.moveaxis(s @ uvw_axes(ra0, dec0).T, -1, 0)
    return l, m, n

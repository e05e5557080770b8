"""The one sky-time module (coords, casacore) and the shared constants, against astropy: sidereal time
and the Sun over a night, azimuth/elevation of many directions through the fitted rotation, and the MS
time scale. Tolerances are stated at each check; astropy here is the simulator's (IERS offline)."""
from datetime import datetime, timezone

import numpy as np
import pytest

from orca_steps import constants, coords
from orca_steps.sim import geometry as simgeo

NIGHT = 60841.0 * 86400.0 + np.linspace(0.0, 86400.0, 13)  # 2025-06-15, every 2 h


def _astropy():
    u, coordinates, time = simgeo._astropy()  # IERS tables offline
    return u, coordinates, time, simgeo._site()


def test_sidereal_time_of_many_times_agrees_with_astropy_to_10_ms():
    _, _, time, site = _astropy()
    truth = time.Time(NIGHT / 86400.0, format="mjd", scale="utc").sidereal_time("apparent", longitude=site.lon).hour
    ours = coords.local_sidereal_hours(NIGHT)
    assert ours.shape == NIGHT.shape and np.all((ours >= 0) & (ours < 24))
    assert np.abs((ours - truth + 12) % 24 - 12).max() * 3600 < 0.01  # s
    assert coords.local_sidereal_hours(NIGHT[3]) == pytest.approx(ours[3], abs=1e-12)  # a scalar gives a float


def test_sun_elevation_agrees_with_astropy_to_5_arcsec():
    _, coordinates, time, site = _astropy()
    when = time.Time(NIGHT / 86400.0, format="mjd", scale="utc")
    truth = coordinates.get_body("sun", when, site).transform_to(coordinates.AltAz(obstime=when, location=site)).alt.deg
    ours = coords.sun_elevation_deg(NIGHT)
    assert truth.min() < -20 and truth.max() > 60  # night and day both checked
    assert np.abs(ours - truth).max() * 3600 < 5.0


def test_altaz_of_many_directions_agrees_with_astropy_to_an_arcminute():
    u, coordinates, time, site = _astropy()
    rng = np.random.default_rng(5)
    ra, dec = rng.uniform(0, 360, 400), np.rad2deg(np.arcsin(rng.uniform(-1, 1, 400)))
    t = NIGHT[5]
    seen = coordinates.SkyCoord(ra * u.deg, dec * u.deg, frame=coordinates.FK5(equinox="J2000")).transform_to(
        coordinates.AltAz(obstime=time.Time(t / 86400.0, format="mjd", scale="utc"), location=site))
    az, el = coords.altaz_deg(ra, dec, t)
    assert np.abs(el - seen.alt.deg).max() * 3600 < 60.0
    daz = np.rad2deg(np.abs(np.angle(np.exp(1j * np.deg2rad(az - seen.az.deg)))))
    assert (daz * np.cos(np.deg2rad(seen.alt.deg))).max() * 3600 < 60.0  # on the sky: azimuth shrinks near zenith
    assert np.isnan(coords.altaz_deg([np.nan], [0.0], t)[1][0])  # off the sky stays off


def test_ms_time_scale_agrees_with_astropy():
    _, _, time, _ = _astropy()
    assert constants.MJD_UNIX_OFFSET_S == pytest.approx(time.Time("1970-01-01T00:00:00", scale="utc").mjd * 86400.0,
                                                        abs=1e-6)
    t = 5256679327.9
    assert constants.utc_of(t).replace(tzinfo=None).isoformat(timespec="milliseconds") == \
        time.Time(t / 86400.0, format="mjd", scale="utc").isot
    when = datetime(2025, 6, 15, 4, 42, 7, 900000, tzinfo=timezone.utc)
    assert constants.mjd_seconds(when) == pytest.approx(time.Time(when).mjd * 86400.0, abs=1e-4)
    assert constants.mjd_seconds(when.replace(tzinfo=None)) == constants.mjd_seconds(when)  # naive is UTC
    assert constants.mjd_seconds(constants.utc_of(t)) == pytest.approx(t, abs=1e-5)
    for s in (t, t + 0.0004, t + 0.0006, 60841.0 * 86400.0 - 0.0004):  # rounds to the millisecond, as astropy
        assert constants.isot(s) == time.Time(s / 86400.0, format="mjd", scale="utc").isot


def test_physical_constants_agree_with_astropy():
    from astropy import constants as ac

    assert constants.C_M_S == ac.c.value
    _, _, time, site = _astropy()
    hour = time.Time(NIGHT[:2] / 86400.0, format="mjd", scale="utc").sidereal_time("mean", longitude=site.lon).hour
    assert ((hour[1] - hour[0]) % 24) / 2.0 == pytest.approx(constants.SIDEREAL_RATE, abs=1e-8)

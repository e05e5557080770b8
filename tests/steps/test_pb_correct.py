"""Primary-beam correction: the H5 beam read as orca's schema says, pixel elevations that agree with
casacore, NaN where the correction is not trusted, and the deep image's field sources at their true
positions and fluxes after correction."""
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from scipy.optimize import least_squares

from orca_steps.coords import altaz, zenith_j2000
from orca_steps.errors import InputError
from orca_steps.pb_correct import (MIN_ELEVATION_DEG, MIN_RESPONSE, BeamModel, celestial_wcs, image_time,
                                   pb_correct_image, pixel_altaz, science_images_in)
from orca_steps.sim.beam import stokes_i_response, write_beam_h5
from orca_steps.sim.images import make_header
from phase2_unit import processed_unit

TIME_S = 5256679327.9  # mid-hour of the simulated unit (LST 14h, 2025-06-15)


@pytest.fixture(scope="module")
def beam_file(tmp_path_factory):
    return write_beam_h5(tmp_path_factory.mktemp("beam") / "beam.h5", np.array([70e6, 80e6]))


def test_beam_response_is_the_normalised_sum_of_the_four_fields(beam_file):
    beam = BeamModel(beam_file)
    rng = np.random.default_rng(3)
    theta, phi = rng.uniform(0, 88, 500), rng.uniform(0, 360, 500)
    got = beam.response(75e6, theta, phi)
    np.testing.assert_allclose(got, stokes_i_response(np.deg2rad(90 - theta)), atol=2e-3)
    assert beam.response(75e6, np.array([0.0]), np.array([123.0]))[0] == pytest.approx(1.0)


def test_beam_is_interpolated_in_frequency(tmp_path):
    """Two planes with different patterns: halfway between them, the response is their mean."""
    theta, phi = np.linspace(0, 90, 91), np.linspace(0, 360, 73)
    th = np.deg2rad(theta)[:, None] * np.ones(phi.size)[None, :]
    power = np.stack([np.cos(th) ** 2, np.cos(th) ** 4])  # normalised at zenith already
    path = tmp_path / "two.h5"
    with h5py.File(path, "w") as h5:
        h5["freq_Hz"], h5["theta_pts"], h5["phi_pts"] = [60e6, 80e6], theta, phi
        for g in ("X_pol_Efields", "Y_pol_Efields"):
            for k in ("etheta", "ephi"):
                h5[f"{g}/{k}"] = np.sqrt(power / 4).astype(np.complex64)
    beam = BeamModel(path)
    t = np.array([30.0, 60.0])
    expected = 0.5 * (np.cos(np.deg2rad(t)) ** 2 + np.cos(np.deg2rad(t)) ** 4)
    np.testing.assert_allclose(beam.response(70e6, t, np.array([10.0, 200.0])), expected, rtol=2e-3)
    np.testing.assert_allclose(beam.response(82e6, t, t), np.cos(np.deg2rad(t)) ** 4, rtol=2e-3)  # clamped
    for far in (28.7e6, 57e6, 83e6):  # more than 3 % outside 60-80 MHz: refused, not the nearest plane
        with pytest.raises(InputError, match=rf"two\.h5: image frequency {far / 1e6:.3f} MHz is outside"):
            beam.response(far, t, t)


def test_the_response_is_normalised_at_zenith_whatever_the_file_holds(tmp_path):
    """A beam built here, not by the simulator: zenith power 7 at 60 MHz, 0.2 at 80 MHz, patterns that
    differ between X and Y. The response is the sum of the four |E|^2 divided by its zenith value."""
    theta, phi = np.linspace(0, 90, 91), np.linspace(0, 360, 73)
    th, ph = np.meshgrid(np.deg2rad(theta), np.deg2rad(phi), indexing="ij")
    path = tmp_path / "scaled.h5"
    with h5py.File(path, "w") as h5:
        h5["freq_Hz"], h5["theta_pts"], h5["phi_pts"] = [60e6, 80e6], theta, phi
        for g, pattern in (("X_pol_Efields", np.cos(th)), ("Y_pol_Efields", np.cos(th) ** 2)):
            field = np.stack([np.sqrt(7.0) * pattern, np.sqrt(0.2) * pattern]).astype(np.complex64)
            h5[f"{g}/etheta"], h5[f"{g}/ephi"] = field * np.cos(ph), field * np.sin(ph)
    beam = BeamModel(path)
    t = np.array([0.0, 40.0, 70.0])
    c = np.cos(np.deg2rad(t))
    expected = (c**2 + c**4) / 2  # (|X|^2 + |Y|^2) / zenith value, the same shape at both frequencies
    for freq in (60e6, 70e6, 80e6):
        np.testing.assert_allclose(beam.response(freq, t, np.array([0.0, 100.0, 250.0])), expected, rtol=3e-3)


def test_malformed_beam_files_are_named(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        BeamModel(tmp_path / "none.h5")
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as h5:
        h5["freq_Hz"], h5["theta_pts"], h5["phi_pts"] = [70e6], np.arange(3.0), np.arange(4.0)
    with pytest.raises(InputError, match=r"bad\.h5.*X_pol_Efields/etheta"):
        BeamModel(bad)


def test_pixel_elevations_agree_with_casacore():
    ra0, dec0 = np.rad2deg(zenith_j2000(TIME_S))
    header = make_header((ra0, dec0), 256, 0.5, 75e6, TIME_S, 1.0)
    wcs = celestial_wcs(header)
    yy, xx = np.mgrid[0:256, 0:256]
    az, el = pixel_altaz(wcs, xx, yy, TIME_S)
    rng = np.random.default_rng(1)
    ys, xs = rng.integers(0, 256, 60), rng.integers(0, 256, 60)
    ra, dec = wcs.wcs_pix2world(xs.astype(float), ys.astype(float), 0)
    ok = np.isfinite(ra)
    assert ok.sum() > 30
    ref_az, ref_el = altaz(np.deg2rad(ra[ok]), np.deg2rad(dec[ok]), TIME_S)
    assert np.abs(np.rad2deg(ref_el) - el[ys[ok], xs[ok]]).max() < 30 / 3600
    daz = (np.rad2deg(ref_az) - az[ys[ok], xs[ok]] + 180) % 360 - 180
    assert np.abs(daz * np.cos(ref_el)).max() < 30 / 3600
    assert np.nanmax(el) == pytest.approx(90.0, abs=0.5)  # the centre is the zenith
    assert np.isnan(el[0, 0])  # a corner of a 128-degree SIN image is off the sky


def test_flat_image_becomes_the_inverse_beam_with_nan_where_untrusted(beam_file, tmp_path):
    ra0, dec0 = np.rad2deg(zenith_j2000(TIME_S))
    header = make_header((ra0, dec0), 200, 0.6, 75e6, TIME_S, 1.0)
    image = tmp_path / "flat-image.fits"
    fits.PrimaryHDU(np.ones((1, 1, 200, 200), np.float32), header=header).writeto(image)
    out = pb_correct_image(image, BeamModel(beam_file))
    assert out.name == "flat-image.pbcorr.fits"
    with fits.open(out) as hdul:
        data, hdr = hdul[0].data[0, 0], hdul[0].header
    assert hdr["PBCORR"] is True
    yy, xx = np.mgrid[0:200, 0:200]
    _, el = pixel_altaz(celestial_wcs(header), xx, yy, TIME_S)  # exact, per pixel
    response = stokes_i_response(np.deg2rad(el))
    trusted = (el >= MIN_ELEVATION_DEG) & (response >= MIN_RESPONSE)
    margin = np.abs(el - MIN_ELEVATION_DEG) > 0.5  # away from the cut, where interpolation decides
    assert np.all(np.isnan(data[~trusted & margin]))
    assert np.all(np.isfinite(data[trusted & margin]))
    np.testing.assert_allclose(data[trusted & margin], 1 / response[trusted & margin], rtol=5e-3)
    assert (~trusted).sum() > 1000 and trusted.sum() > 10000  # both regions are really there
    with pytest.raises(InputError, match="already primary-beam corrected"):
        pb_correct_image(out, BeamModel(beam_file))


# --- on the processed subband-hour ---------------------------------------------------------------
def fit_point_source(data: np.ndarray, x0: float, y0: float, header, radius: int = 3) -> tuple[float, float, float]:
    """Peak flux and position (pixels) of a source: the restoring beam fitted around the brightest pixel."""
    xi, yi = int(round(x0)), int(round(y0))
    box = data[yi - radius:yi + radius + 1, xi - radius:xi + radius + 1]
    j, i = np.unravel_index(np.nanargmax(box), box.shape)
    xi, yi = xi - radius + i, yi - radius + j
    yy, xx = np.mgrid[yi - radius:yi + radius + 1, xi - radius:xi + radius + 1]
    sub = data[yi - radius:yi + radius + 1, xi - radius:xi + radius + 1]
    px = abs(header["CDELT1"])
    s_maj, s_min = header["BMAJ"] / px / 2.3548, header["BMIN"] / px / 2.3548
    pa = np.deg2rad(header["BPA"])  # from north (+y) through east (-x)

    def model(p):
        dx, dy = xx - p[1], yy - p[2]
        u = -dx * np.sin(pa) + dy * np.cos(pa)
        v = dx * np.cos(pa) + dy * np.sin(pa)
        return p[0] * np.exp(-0.5 * (u**2 / s_maj**2 + v**2 / s_min**2))

    flux, x, y = least_squares(lambda p: (model(p) - sub).ravel(), [sub.max(), xi, yi]).x
    return float(flux), float(x), float(y)


def deep_pairs(unit) -> list[tuple[Path, Path]]:
    deep = sorted((unit.archive / "I" / "deep").glob("*-image.fits"))
    return [(p, p.with_name(p.name.replace("-image.fits", "-image.pbcorr.fits"))) for p in deep]


def test_every_science_image_is_corrected():
    unit = processed_unit()
    images = science_images_in(unit.archive)
    assert len(images) == 4 + 6 + 1 + 6  # deep I x4, 10-min I x6, deep V, 10-min V x6
    for image in images:
        assert image.with_name(image.name.replace("-image.fits", "-image.pbcorr.fits")).is_file()


def test_field_sources_in_the_deep_images_are_at_truth_after_correction():
    unit = processed_unit()
    pairs = deep_pairs(unit)
    assert len(pairs) == 4
    for raw_path, pb_path in pairs:
        with fits.open(pb_path) as hdul:
            header, data = hdul[0].header, hdul[0].data[0, 0]
        raw = fits.getdata(raw_path)[0, 0]
        wcs = celestial_wcs(header)
        freq = header["CRVAL3"]
        time_s = image_time(header, pb_path)
        for source in unit.truth["field_sources"]:
            comp = source["components"][0]
            true_flux = comp["stokes"][0] * (freq / comp["freq_hz"]) ** comp["index"][0]
            x, y = wcs.wcs_world2pix(comp["ra_deg"], comp["dec_deg"], 0)
            flux, fx, fy = fit_point_source(data, float(x), float(y), header)
            assert np.hypot(fx - x, fy - y) < 1.0, (pb_path.name, source["name"])
            assert flux == pytest.approx(true_flux, rel=0.10), (pb_path.name, source["name"])
            # the correction applied there is the simulator's beam at the source's elevation
            el = np.rad2deg(altaz(np.deg2rad(comp["ra_deg"]), np.deg2rad(comp["dec_deg"]), time_s)[1][0])
            xi, yi = int(round(float(x))), int(round(float(y)))
            assert raw[yi, xi] / data[yi, xi] == pytest.approx(stokes_i_response(np.deg2rad(el)), rel=0.01)

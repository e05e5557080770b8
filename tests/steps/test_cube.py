"""Cube mode on a simulated hour with a few channels: real WSClean with -channels-out, one cube per
product of shape (1, nchan, ny, nx) float32, its FREQ axis and CHANNELS table checked against the MS's
SPECTRAL_WINDOW read directly with casacore, primary-beam correction per channel, loose channels gone."""
from pathlib import Path

import h5py
import numpy as np
import pytest
from astropy.io import fits
from astropy.wcs import WCS
from astropy.time import Time
from casacore import tables

from orca_steps.cube import deep_niter, make_cube
from orca_steps.pipeline import UnitParameters
from orca_steps.products import CUBE_FOLDER, CUBE_PRODUCTS, cube_name
from orca_steps.coords import altaz
from orca_steps.constants import MJD_UNIX_OFFSET_S
from orca_steps.wsclean import utc_stamp
from phase2_data import prepared_concat

NCHAN, SIZE, SCALE = 4, 256, 0.5


def two_plane_beam(path: Path, f_low: float, f_high: float) -> Path:
    """A beam cos^2(zenith angle) at f_low and cos^4 at f_high: each channel's correction differs."""
    theta, phi = np.linspace(0, 90, 91), np.linspace(0, 360, 73)
    th = np.deg2rad(theta)[:, None] * np.ones(phi.size)[None, :]
    power = np.stack([np.cos(th) ** 2, np.cos(th) ** 4])
    with h5py.File(path, "w") as h5:
        h5["freq_Hz"], h5["theta_pts"], h5["phi_pts"] = [f_low, f_high], theta, phi
        for g in ("X_pol_Efields", "Y_pol_Efields"):
            for k in ("etheta", "ephi"):
                h5[f"{g}/{k}"] = np.sqrt(power / 4).astype(np.complex64)
    return path


@pytest.fixture(scope="module")
def cube_unit(tmp_path_factory):
    root = tmp_path_factory.mktemp("cube")
    ms, _, _ = prepared_concat(root, n_channels=NCHAN, n_integrations=2, n_antennas=24)
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        freqs = np.asarray(spw.getcell("CHAN_FREQ", 0))
    beam = two_plane_beam(root / "beam.h5", freqs[0], freqs[-1])
    work = ms.parent
    result = make_cube(ms, work, "73MHz", SIZE, SCALE, str(beam), threads=2)
    return ms, work, result


def test_niter_follows_orca():
    assert deep_niter(48) == round(500000 / 48 ** 0.5) == 72169
    assert deep_niter(4) == 250000


def test_one_cube_per_product_with_the_ms_channel_frequencies(cube_unit):
    ms, work, result = cube_unit
    with tables.table(str(ms / "SPECTRAL_WINDOW"), ack=False) as spw:
        chan_freq = np.asarray(spw.getcell("CHAN_FREQ", 0))
        assert int(spw.getcol("NUM_CHAN")[0]) == NCHAN
    with tables.table(str(ms), ack=False) as tab:
        times = np.unique(tab.getcol("TIME"))
    stamp = utc_stamp((times[0] + times[-1]) / 2)
    expected = {cube_name("73MHz", p, stamp) for p in CUBE_PRODUCTS} | {cube_name("73MHz", "image", stamp, True)}
    assert {p.name for p in (work / CUBE_FOLDER).iterdir()} == expected
    for path in (work / CUBE_FOLDER).iterdir():
        with fits.open(path) as hdul:
            data, header = hdul[0].data, hdul[0].header
            assert data.shape == (1, NCHAN, SIZE, SIZE) and data.dtype == np.dtype(">f4")
            assert header["CTYPE3"] == "FREQ"
            axis = WCS(header).sub([3]).pixel_to_world_values(np.arange(NCHAN))
            np.testing.assert_allclose(axis, chan_freq, rtol=0, atol=1.0)  # linear axis = the MS channels
            table = hdul["CHANNELS"].data
            np.testing.assert_array_equal(table["CHAN"], np.arange(NCHAN))
            np.testing.assert_allclose(table["FREQ"], chan_freq, rtol=0, atol=1.0)
            if "psf" in path.name or "image" in path.name:
                assert np.all(table["BMAJ"] > 0)
    np.testing.assert_allclose(result.freqs_hz, chan_freq, atol=1.0)
    assert not (work / ".cube-channels").exists()


def test_channels_differ_and_the_pbcorr_cube_is_image_over_beam(cube_unit):
    _, work, result = cube_unit
    image = fits.getdata(result.cubes["image"])[0]
    pb = fits.getdata(result.cubes["image.pbcorr"])[0]
    assert not np.allclose(image[0], image[-1])  # each plane is its own channel
    header = fits.getheader(result.cubes["image"])
    wcs = WCS(header).celestial
    time_s = Time(header["DATE-AVG"], scale="utc").unix + MJD_UNIX_OFFSET_S
    yy, xx = np.mgrid[8:SIZE:16, 8:SIZE:16]
    ra, dec = wcs.pixel_to_world_values(xx.ravel(), yy.ravel())
    sky = np.isfinite(ra)
    _, el = altaz(np.deg2rad(ra[sky]), np.deg2rad(dec[sky]), time_s)
    high = np.rad2deg(el) > 30
    cos_za = np.sin(el[high])
    freqs = np.asarray(result.freqs_hz)
    for k in range(NCHAN):  # image / pbcorr = the beam at the channel's frequency, linear between the planes
        w = (freqs[k] - freqs[0]) / (freqs[-1] - freqs[0])
        expected = (1 - w) * cos_za ** 2 + w * cos_za ** 4
        got = (image[k] / pb[k])[yy.ravel()[sky][high], xx.ravel()[sky][high]]
        np.testing.assert_allclose(got, expected, rtol=0.02, atol=2e-3)


def test_niter_reaches_wsclean(cube_unit):
    _, _, result = cube_unit
    header = fits.getheader(result.cubes["image"])
    assert header["WSCNITER"] == deep_niter(NCHAN)


def test_mode_implications_live_in_the_unit_parameters():
    base = dict(ms_paths=[], work_dir="/w", subband="73MHz", lst_label="14h", obs_date="2025-06-15", run_label="r")
    snap = UnitParameters(**base, snapshot_only=True, cube=True)
    assert (snap.clean_snapshots, snap.skip_science, snap.cube) == (True, True, False)
    only = UnitParameters(**base, cube_only=True, clean_snapshots=True)
    assert (only.cube, only.clean_snapshots, only.skip_science, only.archive_concat_ms) == (True, False, True, True)
    assert not snap.science_imaging and not only.science_imaging
    plain = UnitParameters(**base)
    assert plain.science_imaging and not plain.cube and not plain.archive_concat_ms
    with pytest.raises(ValueError, match="snapshot_only.*cube_only"):
        UnitParameters(**base, snapshot_only=True, cube_only=True)


def test_cube_dewarp_scales_the_mfs_screen_by_frequency_squared(tmp_path):
    """A uniform 3-pixel MFS screen moves a source by 3 (nu_MFS/nu)^2 pixels in each channel."""
    from orca_steps.cube import dewarp_channels
    from orca_steps.sim.images import write_sky_image
    from orca_steps.skyimage import load_image

    centre, time_s, f_mfs = (200.0, 37.0), 5256679327.9, 70e6
    source = [{"ra_deg": 200.0, "dec_deg": 37.0, "flux_jy": 10.0}]
    freqs = [60e6, 70e6, 84e6]
    paths = [write_sky_image(tmp_path / f"ch{k}.fits", source, centre, time_s, f, size=128, scale_deg=0.25,
                             beam_fwhm_deg=1.5) for k, f in enumerate(freqs)]
    dx, dy = np.full((128, 128), 3.0), np.zeros((128, 128))
    out = dewarp_channels(paths, dx, dy, f_mfs)

    def centroid_x(path):
        data = np.nan_to_num(load_image(path).data)
        data = np.where(data > 0.5 * data.max(), data, 0)
        return float((data.sum(axis=0) * np.arange(128)).sum() / data.sum())

    for before, after, f in zip(paths, out, freqs):
        shift = centroid_x(before) - centroid_x(after)
        assert shift == pytest.approx(3.0 * (f_mfs / f) ** 2, abs=0.05), f

"""dewarp: a smooth position shift is measured against a VLSSr-format catalogue and removed."""
from __future__ import annotations

import json

import numpy as np
import pytest

from orca_steps import dewarp
from orca_steps.errors import InputError
from orca_steps.sim.images import write_sky_image
from orca_steps.sim.sky import write_vlssr
from orca_steps.skyimage import load_image
from sky_fixtures import time_at_lst, zenith_deg

TIME = time_at_lst(14.5)
ZEN = zenith_deg(TIME)
FREQ = 75.4e6


def make_field(tmp_path, n=40, listed=None, shift=1.0):
    """A deep image of ``n`` shifted sources; the catalogue lists the ``listed`` ones (a mask) at true positions."""
    rng = np.random.default_rng(5)
    east, north = rng.uniform(-11, 11, n), rng.uniform(-11, 11, n)
    dec = ZEN[1] + north
    ra = ZEN[0] + east / np.cos(np.deg2rad(dec))
    flux = rng.uniform(5, 30, n)
    # smooth ionospheric shift, up to ~3.5 arcmin
    shift_e = shift * (3.0 * np.sin(np.deg2rad(east * 8)) + 1.0) / 60
    shift_n = shift * (2.5 * np.cos(np.deg2rad(north * 10))) / 60
    seen = [{"ra_deg": r + se / np.cos(np.deg2rad(d)), "dec_deg": d + sn, "flux_jy": f}
            for r, d, f, se, sn in zip(ra, dec, flux, shift_e, shift_n)]
    img = write_sky_image(tmp_path / "deep-I-image.fits", seen, ZEN, TIME, FREQ, size=512, scale_deg=0.05,
                          beam_fwhm_deg=0.2, noise_jy=0.1, seed=2)
    cat = tmp_path / "vlssr.txt"
    listed = np.ones(n, dtype=bool) if listed is None else listed
    write_vlssr(cat, [(r, d, f * (74e6 / FREQ) ** -0.7) for r, d, f in zip(ra[listed], dec[listed], flux[listed])])
    return img, cat, np.column_stack([ra, dec])


def rms_offset(found, truth):
    """rms distance (arcmin) from each true position to the nearest found source, and how many were found."""
    seps = []
    for ra, dec in truth:
        s = np.hypot(((found[:, 0] - ra + 180) % 360 - 180) * np.cos(np.deg2rad(dec)), found[:, 1] - dec) * 60
        if s.min() < 6:
            seps.append(s.min())
    return float(np.sqrt(np.mean(np.square(seps)))), len(seps)


def test_dewarp_reduces_offsets_3x_on_held_out_sources(tmp_path):
    """The screen is built from 3 of every 4 sources; it is judged on the 4th, which it never saw.

    In sample the screen passes through its anchors (residual ~0), so only held-out sources are honest.
    """
    held = np.arange(48) % 4 == 0
    img, cat, truth = make_field(tmp_path, n=48, listed=~held)
    interval = write_sky_image(tmp_path / "int-t0002-I-image.fits", [], ZEN, TIME, FREQ, size=512, scale_deg=0.05)
    res = dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), deep_images=[str(img)],
                                    interval_images=[str(interval)], catalogue=str(cat)))
    assert res.status == "ok" and res.n_anchors >= 30
    assert res.deep_image == res.deep_images[0] == str(tmp_path / "deep-I-image_dewarped.fits")
    assert res.interval_images == [str(tmp_path / "int-t0002-I-image_dewarped.fits")]
    assert sorted(res.dewarped) == sorted([res.deep_image, *res.interval_images])
    assert (tmp_path / "QA" / "dewarp_offsets.png").read_bytes()[:4] == b"\x89PNG"
    before, n_before = rms_offset(dewarp.find_sources(img, tmp_path), truth[held])
    (tmp_path / "after").mkdir()
    after, n_after = rms_offset(dewarp.find_sources(res.dewarped[0], tmp_path / "after"), truth[held])
    assert n_before == n_after == held.sum()  # every held-out source is found, before and after
    assert before > 1.5  # arcmin: the shift is really there
    assert after * 3 <= before, (before, after)
    # the step's own leave-one-out figure tells the same story
    assert res.loo_rms_arcmin * 3 <= res.rms_offset_arcmin, res


def test_a_screen_that_would_fit_noise_is_not_applied(tmp_path):
    """No ionospheric shift: the anchors' offsets are noise, a screen through them would move sources wrongly."""
    img, cat, truth = make_field(tmp_path, shift=0.0)
    res = dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), interval_images=[str(img)],
                                    catalogue=str(cat)))
    assert res.n_anchors >= 6 and res.loo_rms_arcmin >= res.rms_offset_arcmin
    assert res.status.startswith("screen not applied") and res.dewarped == []
    assert res.deep_image == str(img) and res.interval_images == [str(img)]
    assert not list(tmp_path.glob("*_dewarped.fits"))


def test_not_enough_anchors_is_reported(tmp_path):
    img, cat, truth = make_field(tmp_path, listed=np.arange(40) < 4)
    res = dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), interval_images=[str(img)],
                                    catalogue=str(cat)))
    assert res.status.startswith("not enough anchors") and res.dewarped == []
    assert res.deep_image == str(img) and res.interval_images == [str(img)]  # later steps use the images as given
    assert not list(tmp_path.glob("*_dewarped.fits"))
    assert "not enough anchors" in (tmp_path / "QA" / "dewarp.json").read_text()


def test_missing_image_and_malformed_catalogue(tmp_path):
    img, cat, _ = make_field(tmp_path, n=5)
    with pytest.raises(InputError, match="nope.fits: deep Stokes I image FITS file does not exist"):
        dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(tmp_path / "nope.fits"), catalogue=str(cat)))
    with pytest.raises(InputError, match="gone.fits: image to dewarp does not exist"):
        dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), catalogue=str(cat),
                                  interval_images=[str(tmp_path / "gone.fits")]))
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"vlssr_catalog": str(tmp_path / "no-vlssr.txt")}))
    with pytest.MonkeyPatch.context() as mp:  # no catalogue given: the site's, which is missing here
        mp.setenv("ORCA_CONFIG", str(site))
        with pytest.raises(InputError, match="no-vlssr.txt: reference catalogue does not exist"):
            dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img)))
    cat.write_text("12 30 00.0 +40 00 xx 0.0 5.0\n")
    with pytest.raises(InputError, match="vlssr.txt, line 1: malformed VLSSr entry"):
        dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), catalogue=str(cat)))
    cat.write_text("# RA Dec Flux\n12 30 00.0 +40 00 00.0 5.0\n")  # no Dist column: flux would be misread
    with pytest.raises(InputError, match="vlssr.txt, line 2: malformed VLSSr entry: 7 fields"):
        dewarp.run(dewarp.Options(work_dir=str(tmp_path), deep_image=str(img), catalogue=str(cat)))


def test_vlssr_text_format(tmp_path):
    """Source lines of the VLSSr text: flux is the 8th field (after Dist), upper limits '<'; error lines skipped."""
    cat = tmp_path / "vlssr.txt"
    cat.write_text("  RA(2000)    Dec(2000)   Dist(\")   Flux   Major Minor    PA\n"
                   " h  m    s    d  m   s     Ori      Jy      \"     \"    deg\n"
                   "00 00 00.58 -11 44 05.9    0.0     1.23  <80.0  <80.0    0.0\n"
                   "          0.07       1.1           0.17\n"
                   "12 30 49.42 +12 23 28.0   12.0   <2.50\n")
    np.testing.assert_allclose(dewarp.load_vlssr(cat), [[0.58 * 15 / 3600, -(11 + 44 / 60 + 5.9 / 3600), 1.23],
                                                       [187.7059167, 12.3911111, 2.5]], rtol=1e-6)


def test_blank_pixels_stay_local(tmp_path):
    """PB-corrected images are NaN below 10 deg elevation: the blank must not spread over the image."""
    img = write_sky_image(tmp_path / "pb.fits", [], ZEN, TIME, FREQ, size=64, scale_deg=0.5, noise_jy=1.0, seed=3)
    sky = load_image(img)
    sky.data[:, :10] = np.nan
    dx, dy = np.full(sky.data.shape, 0.3), np.full(sky.data.shape, -0.2)
    out = load_image(dewarp.dewarp_image(sky, dx, dy, tmp_path / "pb_dewarped.fits"))
    assert np.isnan(out.data[:, :10]).all() and np.isfinite(out.data[1:-1, 12:-1]).all()
    assert np.isnan(out.data).sum() <= 10 * 64 + 2 * 64 + 64  # the blank grows by at most a pixel (+ edges)


def test_relative_paths_work(tmp_path, monkeypatch):
    """Work dir, images and catalogue given relative to the current directory (PyBDSF runs elsewhere)."""
    (tmp_path / "unit").mkdir()
    img, cat, _ = make_field(tmp_path / "unit")
    monkeypatch.chdir(tmp_path)
    res = dewarp.run(dewarp.Options(work_dir="unit", deep_image="unit/deep-I-image.fits",
                                    interval_images=["unit/deep-I-image.fits"], catalogue="unit/vlssr.txt"))
    assert res.status == "ok" and res.n_anchors >= 30
    assert res.deep_image == "unit/deep-I-image_dewarped.fits" and load_image(res.deep_image).data.shape


def test_pybdsf_failure_says_why(tmp_path):
    """PyBDSF runs in a forked child: its failure is a ToolFailedError carrying what the child said."""
    from orca_steps.errors import ToolFailedError

    bad = tmp_path / "bad.fits"
    bad.write_text("not a FITS image")
    with pytest.raises(ToolFailedError, match="(?s)PyBDSF failed.*cannot be opened"):
        dewarp.find_sources(bad, tmp_path)

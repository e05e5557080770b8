"""transient-search: an injected transient in one 10-min interval, a V burst, artefacts rejected, masks."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from orca_steps import transient_search
from orca_steps.errors import InputError
from orca_steps.sim.images import write_sky_image
from sky_fixtures import count_held_images, time_at_lst, zenith_deg

TIME = time_at_lst(14.5)
ZEN = zenith_deg(TIME)
KW = dict(size=256, scale_deg=0.35, beam_fwhm_deg=1.5)


def at(east, north):
    return ZEN[0] + east / np.cos(np.deg2rad(ZEN[1] + north)), ZEN[1] + north


def src(pos, flux):
    return {"ra_deg": pos[0], "dec_deg": pos[1], "flux_jy": flux}


STEADY = [src(at(5, 5), 12.0), src(at(-15, 8), 8.0), src(at(10, -20), 20.0)]
SHIFTER = at(-12, -10)  # 4.5 Jy; moved by 0.6 beam in interval 4 (an ionospheric artefact)
VIRA = (187.7059, 12.3911)  # varies by 10 % between intervals: must be masked
TRANSIENT, T_INTERVAL = at(8, 15), 2
BURST, B_INTERVAL = at(-5, -15), 3


def make_images(tmp_path):
    deep_sky = STEADY + [src(SHIFTER, 4.5), src(VIRA, 500.0)]
    deep = [write_sky_image(tmp_path / "deep-I-image.fits", deep_sky, ZEN, TIME, noise_jy=0.1, seed=1, **KW),
            write_sky_image(tmp_path / "deep-V-image.fits", [], ZEN, TIME, noise_jy=0.1, stokes="V", seed=2, **KW)]
    intervals = []
    for k in range(6):
        t = TIME + (k - 3) * 600.0
        sky = STEADY + [src(VIRA, 500.0 * (1 + 0.1 * (-1) ** k))]
        sky.append(src((SHIFTER[0], SHIFTER[1] + 0.9), 4.5) if k == 4 else src(SHIFTER, 4.5))
        if k == T_INTERVAL:
            sky.append(src(TRANSIENT, 5.0))
        intervals.append(write_sky_image(tmp_path / f"int-t{k:04d}-I-image.fits", sky, ZEN, t, noise_jy=0.3,
                                         seed=10 + k, **KW))
        intervals.append(write_sky_image(tmp_path / f"int-t{k:04d}-V-image.fits",
                                         [src(BURST, 3.5)] if k == B_INTERVAL else [], ZEN, t, noise_jy=0.3,
                                         stokes="V", seed=30 + k, **KW))
    return [str(p) for p in deep], [str(p) for p in intervals]


def near(row, pos, arcmin=40):
    return np.hypot((float(row["ra_deg"]) - pos[0]) * np.cos(np.deg2rad(pos[1])), float(row["dec_deg"]) - pos[1]) * 60 < arcmin


@pytest.fixture(scope="module")
def found(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tr")
    deep, intervals = make_images(tmp)
    cat = tmp / "cat.csv"
    cat.write_text(f"name,ra,dec\nKnownThing,{TRANSIENT[0]:.5f},{TRANSIENT[1]:.5f}\n")
    res = transient_search.run(transient_search.Options(work_dir=str(tmp), deep_images=deep,
                                                        interval_images=intervals, catalogue=str(cat)))
    return tmp, deep, intervals, res, list(csv.DictReader(open(res.candidates_csv)))


def test_transient_found_in_its_interval_and_nothing_else(found):
    _, _, _, res, rows = found
    assert res.n_candidates == len(rows) == 2, rows
    i_row = [r for r in rows if r["kind"] == "I-difference"][0]
    assert i_row["image"] == f"int-t{T_INTERVAL:04d}-I-image.fits" and near(i_row, TRANSIENT)
    assert float(i_row["peak_jy"]) == pytest.approx(5.0, rel=0.15) and float(i_row["snr"]) >= 7
    assert i_row["label"] == "KnownThing"
    v_row = [r for r in rows if r["kind"] == "V-blind"][0]
    assert v_row["image"] == f"int-t{B_INTERVAL:04d}-V-image.fits" and near(v_row, BURST)
    assert float(v_row["snr"]) >= 5 and v_row["label"] == ""
    assert res.quality == "ok"
    for r in rows:
        assert open(r["cutout"], "rb").read(6) == b"SIMPLE"


def test_shifted_source_rejected_as_bilobed(found):
    _, _, _, res, _ = found
    assert res.n_rejected_bilobed >= 1


def test_without_masks_vir_a_would_be_found(found):
    tmp, deep, intervals, _, _ = found
    res = transient_search.run(transient_search.Options(work_dir=str(tmp / "nomask"), deep_images=deep,
                                                        interval_images=intervals, ateam_radius_deg=0.0,
                                                        bright_sigma=1e9, max_candidates=2))
    assert res.n_candidates > 2  # Vir A's 10 % variation and the bright sources' residuals appear
    assert res.quality == "too many candidates"
    summary = json.loads((tmp / "nomask" / "transients" / "summary.json").read_text())
    assert summary["quality"] == "too many candidates" and summary["n_candidates"] == res.n_candidates


def test_missing_image_and_malformed_catalogue_fail_clearly(found):
    tmp, deep, intervals, _, _ = found
    with pytest.raises(InputError, match="nope.fits: 10-min image FITS file does not exist"):
        transient_search.run(transient_search.Options(work_dir=str(tmp), deep_images=deep,
                                                      interval_images=[str(tmp / "nope.fits")]))
    bad = tmp / "badcat.csv"
    bad.write_text("name,ra\nx,1\n")
    with pytest.raises(InputError, match="badcat.csv: target list lacks column"):
        transient_search.run(transient_search.Options(work_dir=str(tmp), deep_images=deep,
                                                      interval_images=intervals, catalogue=str(bad)))


def test_deep_image_with_the_10min_beam_is_differenced(found):
    """Of several deep I images (orca makes four), the one imaged like the 10-min ones is subtracted."""
    tmp, deep, intervals, res, rows = found
    sharper = write_sky_image(tmp / "deep-I-sharp-image.fits", STEADY, ZEN, TIME, noise_jy=0.1, seed=1,
                              **{**KW, "beam_fwhm_deg": 0.8})
    again = transient_search.run(transient_search.Options(work_dir=str(tmp / "several"),
                                                          deep_images=[str(sharper), *deep], interval_images=intervals))
    assert again.deep_i_image == deep[0] == res.deep_i_image
    assert [(r["image"], r["x"], r["y"]) for r in again.candidates] == [(r["image"], int(r["x"]), int(r["y"]))
                                                                         for r in rows]


def test_local_rms_is_the_robust_std_of_each_tile():
    """The vectorised tiles give exactly what robust_std gives tile by tile: horizon blanks, a masked disc,
    partial edge tiles, odd and even counts of finite pixels, an all-blank tile."""
    from orca_steps.skyimage import robust_std

    rng = np.random.default_rng(5)
    data = rng.normal(size=(203, 190))
    yy, xx = np.mgrid[0:203, 0:190]
    data[np.hypot(yy - 101, xx - 95) > 100] = np.nan
    data[:7, :] = np.nan
    mask = np.hypot(yy - 60, xx - 140) < 12
    mask[30, 31] = True  # one pixel: that tile has an odd count
    box = 25
    rms = transient_search.local_rms(data, mask, box)
    for y0 in range(0, 203, box):
        for x0 in range(0, 190, box):
            tile = np.where(mask, np.nan, data)[y0:y0 + box, x0:x0 + box]
            expected = robust_std(tile)
            got = rms[y0:y0 + box, x0:x0 + box]
            assert np.array_equal(got, np.full(tile.shape, expected), equal_nan=True), (y0, x0)
    assert np.isnan(rms[0, 0]) and np.isfinite(rms[100, 100])


def test_at_most_the_deep_image_and_one_other_in_memory(tmp_path, monkeypatch):
    """Images are streamed: 17 of 4096^2 would need 2.3 GB (bench/science_memory.py measures the peak)."""
    deep, intervals = make_images(tmp_path)
    most = count_held_images(monkeypatch, transient_search)
    res = transient_search.run(transient_search.Options(work_dir=str(tmp_path), deep_images=deep,
                                                        interval_images=intervals))
    assert res.n_candidates >= 1
    assert most[0] == 2


def test_region_peaks_are_scipys_maximum_positions():
    from scipy.ndimage import label, maximum_position

    rng = np.random.default_rng(7)
    values = rng.normal(size=(120, 97))
    labels, n = label(values > 1.5)
    assert n > 50
    expected = [tuple(int(v) for v in p) for p in maximum_position(values, labels, range(1, n + 1))]
    assert transient_search.region_peaks(values, labels, n) == expected
    assert transient_search.region_peaks(values, np.zeros_like(labels), 0) == []

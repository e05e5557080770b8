"""photometry: injected target fluxes, a Stokes V burst, an empty target, confusers, solar system, failures."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from orca_steps import photometry
from orca_steps.errors import InputError
from orca_steps.sim.images import write_sky_image
from orca_steps.targets import load_targets
from sky_fixtures import count_held_images, time_at_lst, zenith_deg

TIME = time_at_lst(14.5)
ZEN = zenith_deg(TIME)
INTERVAL_S = 600.0
BURST_INTERVAL = 3


def at(east_deg: float, north_deg: float) -> tuple[float, float]:
    return ZEN[0] + east_deg / np.cos(np.deg2rad(ZEN[1] + north_deg)), ZEN[1] + north_deg


TARGETS = {"HD 1": (at(6, 4), 5.0, 0.0), "Star-B": (at(-10, -6), 3.0, 0.0),
           "Burster": (at(4, -12), 0.0, 4.0), "Empty": (at(-8, 12), 0.0, 0.0)}
CONFUSER = at(6 + 4.0, 4)  # 4 beams east of HD 1: inside its noise annulus


def write_targets(path, rows=None):
    lines = ["name,ra,dec,stokes,confusers"]
    for name, ((ra, dec), _, _) in TARGETS.items():
        conf = f"{CONFUSER[0]:.5f} {CONFUSER[1]:.5f}" if name == "HD 1" else ""
        lines.append(f"{name},{ra:.6f},{dec:.6f},IV,{conf}")
    lines.append("Southern,14h30m00s,-40d00m00s,I,")
    path.write_text("\n".join(rows or lines) + "\n")
    return path


def make_images(tmp_path):
    """Deep I/V and six 10-min I/V images; the burst is in V of interval 3 only."""
    i_src = [{"ra_deg": p[0], "dec_deg": p[1], "flux_jy": s} for p, s, _ in TARGETS.values() if s]
    i_src.append({"ra_deg": CONFUSER[0], "dec_deg": CONFUSER[1], "flux_jy": 30.0})
    kw = dict(size=256, scale_deg=0.25, beam_fwhm_deg=1.0)
    deep = [write_sky_image(tmp_path / "deep-I-image.fits", i_src, ZEN, TIME, noise_jy=0.1, seed=1, **kw),
            write_sky_image(tmp_path / "deep-V-image.fits", [], ZEN, TIME, noise_jy=0.1, stokes="V", seed=2, **kw)]
    burst = [{"ra_deg": p[0], "dec_deg": p[1], "flux_jy": v} for p, _, v in TARGETS.values() if v]
    intervals = []
    for k in range(6):
        t = TIME - 3 * INTERVAL_S + k * INTERVAL_S
        intervals.append(write_sky_image(tmp_path / f"int-t{k:04d}-I-image.fits", i_src, ZEN, t, noise_jy=0.4,
                                         seed=10 + k, **kw))
        intervals.append(write_sky_image(tmp_path / f"int-t{k:04d}-V-image.fits",
                                         burst if k == BURST_INTERVAL else [], ZEN, t, noise_jy=0.4,
                                         stokes="V", seed=20 + k, **kw))
    return [str(p) for p in deep], [str(p) for p in intervals]


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("phot")
    deep, intervals = make_images(tmp)
    res = photometry.run(photometry.Options(work_dir=str(tmp), target_lists=[str(write_targets(tmp / "t.csv"))],
                                            deep_images=deep, interval_images=intervals))
    rows = list(csv.DictReader(open(res.summary_csv)))
    return tmp, res, rows


def test_recovers_injected_fluxes_within_10_percent(result):
    _, _, rows = result
    for name in ("HD 1", "Star-B"):
        deep_i = [r for r in rows if r["target"] == name and r["image"] == "deep-I-image.fits"][0]
        truth = TARGETS[name][1]
        assert float(deep_i["flux_at_position_jy"]) == pytest.approx(truth, rel=0.10)
        assert float(deep_i["peak_jy"]) == pytest.approx(truth, rel=0.10)
        assert deep_i["detected"] == "True"


def test_confuser_is_masked_from_the_noise_annulus(result):
    _, _, rows = result
    deep_i = [r for r in rows if r["target"] == "HD 1" and r["image"] == "deep-I-image.fits"][0]
    assert float(deep_i["rms_jy"]) == pytest.approx(0.1, rel=0.35)


def test_v_burst_detected_in_its_interval_only(result):
    tmp, res, rows = result
    v_rows = [r for r in rows if r["target"] == "Burster" and r["stokes"] == "V" and r["image"].startswith("int")]
    assert len(v_rows) == 6
    snr = {r["image"]: float(r["snr"]) for r in v_rows}
    burst_img = f"int-t{BURST_INTERVAL:04d}-V-image.fits"
    assert snr[burst_img] >= 5
    assert all(abs(s) < 5 for img, s in snr.items() if img != burst_img)
    assert float([r for r in v_rows if r["image"] == burst_img][0]["peak_jy"]) == pytest.approx(4.0, rel=0.15)
    det = [d for d in res.detections if d["target"] == "Burster"]
    assert [d["image"] for d in det] == [burst_img]
    assert (tmp / "detections" / f"Burster_int-t{BURST_INTERVAL:04d}-V-image.fits").is_file()


def test_no_detection_at_empty_target(result):
    tmp, res, rows = result
    empty = [r for r in rows if r["target"] == "Empty"]
    assert len(empty) == 14 and all(r["status"] == "ok" for r in empty)
    assert all(r["detected"] == "False" and abs(float(r["snr"])) < 5 for r in empty)
    assert not [d for d in res.detections if d["target"] == "Empty"]
    assert (tmp / "photometry" / "Empty.csv").is_file() and (tmp / "photometry" / "Empty.png").is_file()


def test_low_targets_skipped_and_solar_system_listed(result):
    _, res, rows = result
    south = [r for r in rows if r["target"] == "Southern"]
    assert south and all(r["status"] == "below 30 deg" for r in south)
    bodies = {r["target"] for r in rows if r["kind"] == "solar-system"}
    assert bodies == {"Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"}
    assert res.n_targets == 5 + 8


def test_missing_image_and_malformed_csv_fail_clearly(tmp_path):
    deep, _ = make_images(tmp_path)
    with pytest.raises(InputError, match="nope.fits: deep image FITS file does not exist"):
        photometry.run(photometry.Options(work_dir=str(tmp_path), deep_images=[str(tmp_path / "nope.fits")]))
    bad = write_targets(tmp_path / "bad.csv", ["name,ra,dec", "ok,10.0,20.0", "broken,not-an-angle,20"])
    with pytest.raises(InputError, match="bad.csv, line 3: malformed target entry"):
        load_targets(bad)
    nocol = write_targets(tmp_path / "nocol.csv", ["name,ra", "x,1"])
    with pytest.raises(InputError, match=r"lacks column\(s\) \['dec'\]"):
        photometry.run(photometry.Options(work_dir=str(tmp_path), deep_images=deep, target_lists=[str(nocol)]))


def test_one_image_in_memory_at_a_time(tmp_path, monkeypatch):
    """Images are streamed: 17 of 4096^2 would need 2.3 GB (bench/science_memory.py measures the peak)."""
    deep, intervals = make_images(tmp_path)
    most = count_held_images(monkeypatch, photometry)
    res = photometry.run(photometry.Options(work_dir=str(tmp_path), target_lists=[str(write_targets(tmp_path / "t.csv"))],
                                            deep_images=deep, interval_images=intervals, solar_system=False))
    assert res.n_measurements > 0
    assert most[0] == 1

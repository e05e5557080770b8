"""flux-check: calibrator fluxes against published spectra, image noise, clear failures."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest

from orca_steps import flux_check
from orca_steps.errors import InputError
from orca_steps.sim.images import write_sky_image
from orca_steps.skyimage import load_calibrators, spectrum_jy
from sky_fixtures import time_at_lst, zenith_deg

FREQ = 75.4e6


def calibrator_image(path, scale: float = 1.0, noise: float = 0.3, stokes: str = "I"):
    time_s = time_at_lst(14.5)
    sources = [{"ra_deg": c["ra_deg"], "dec_deg": c["dec_deg"], "flux_jy": scale * spectrum_jy(c, FREQ)}
               for c in load_calibrators()] if stokes == "I" else []
    write_sky_image(path, sources, zenith_deg(time_s), time_s, FREQ, size=512, scale_deg=0.25,
                    beam_fwhm_deg=1.0, noise_jy=noise, stokes=stokes, seed=3)
    return path


def test_spectra_match_published_values():
    cals = {c["name"]: c for c in load_calibrators()}
    # SH12 A0 is the 150 MHz flux; PB17 3C123 at 1 GHz is 10^1.8017
    assert spectrum_jy(cals["3C286"], 150e6) == pytest.approx(27.477)
    assert spectrum_jy(cals["3C123"], 1e9) == pytest.approx(63.343, rel=1e-4)
    # 3C380 is a pure power law: S(74 MHz) = 77.352 (74/150)^-0.767
    assert spectrum_jy(cals["3C380"], 74e6) == pytest.approx(77.352 * (74 / 150) ** -0.767)


def test_ratios_within_10_percent_and_noise(tmp_path):
    deep = calibrator_image(tmp_path / "deep-I.fits")
    v = calibrator_image(tmp_path / "deep-V.fits", noise=0.2, stokes="V")
    result = flux_check.run(flux_check.Options(deep_image=str(deep), noise_images=[str(deep), str(v)],
                                               work_dir=str(tmp_path)))  # the deep I is listed once
    rows = list(csv.DictReader(open(result.flux_csv)))
    assert [r["name"] for r in rows] == [c["name"] for c in load_calibrators()]
    up = [r for r in rows if float(r["elevation_deg"]) >= 20]
    assert {r["name"] for r in up} >= {"3C286", "3C295"}
    for r in up:
        assert r["status"] == "ok", r
        assert abs(float(r["ratio"]) - 1) < 0.10, r
        assert float(r["offset_arcmin"]) < 5
    for r in rows:
        if float(r["elevation_deg"]) < 20:
            assert r["status"].startswith("below") and r["ratio"] == ""
    assert result.n_fitted == len(up)
    assert abs(result.median_ratio - 1) < 0.05
    noise = list(csv.DictReader(open(result.noise_csv)))
    assert [n["stokes"] for n in noise] == ["I", "V"]
    assert float(noise[1]["inner_rms_jy"]) == pytest.approx(0.2, rel=0.15)
    assert result.rms_v_jy == pytest.approx(0.2, rel=0.15)
    assert (tmp_path / "QA" / "flux_check.png").stat().st_size > 1000


def test_a_wrong_flux_scale_shows(tmp_path):
    deep = calibrator_image(tmp_path / "deep-I.fits", scale=1.3)
    result = flux_check.run(flux_check.Options(deep_image=str(deep), work_dir=str(tmp_path)))
    assert result.median_ratio == pytest.approx(1.3, rel=0.05)
    assert result.rms_v_jy is None


def test_calibrators_absent_from_the_image_are_not_detected(tmp_path):
    """A fit to noise is no flux measurement: a peak under 5 x the inner rms is reported as not detected."""
    deep = calibrator_image(tmp_path / "deep-I.fits", scale=0.0, noise=2.0)
    result = flux_check.run(flux_check.Options(deep_image=str(deep), work_dir=str(tmp_path)))
    rows = list(csv.DictReader(open(result.flux_csv)))
    up = [r for r in rows if float(r["elevation_deg"]) >= 20]
    assert up and all(r["status"].startswith("not detected (peak") and r["ratio"] == "" for r in up), up
    assert result.n_fitted == 0 and result.median_ratio is None and result.plot is None


def test_missing_image_fails_clearly(tmp_path):
    with pytest.raises(InputError, match="deep Stokes I image FITS file does not exist"):
        flux_check.run(flux_check.Options(deep_image=str(tmp_path / "nope.fits"), work_dir=str(tmp_path)))
    proc = subprocess.run([sys.executable, "-m", "orca_steps.cli", "flux-check", "--deep-image",
                           str(tmp_path / "nope.fits"), "--work-dir", str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode != 0 and "nope.fits" in proc.stderr


def test_malformed_catalogue_fails_clearly(tmp_path):
    deep = calibrator_image(tmp_path / "deep-I.fits")
    bad = tmp_path / "cals.json"
    bad.write_text(json.dumps({"calibrators": [{"name": "3C286", "ra": "not an angle", "dec": "+30d"}]}))
    with pytest.raises(InputError, match="malformed calibrator catalogue"):
        flux_check.run(flux_check.Options(deep_image=str(deep), work_dir=str(tmp_path), catalogue=str(bad)))


@pytest.mark.slow
def test_wsclean_image_of_simulated_calibrators(tmp_path):
    """End to end: simulated MS with the calibrators at their published spectra, real WSClean CLEAN image."""
    from orca_steps.sim import simulate_night
    from orca_steps.tools import run_tool

    night = simulate_night(tmp_path / "night", n_antennas=48, n_integrations=1, a_team=False, rfi=False,
                           n_field_sources=0, calibrators=True, apply_beam=False, write_model=True,
                           dead_antennas=0, noisy_antennas=0)
    ms = [str(p) for p in night.ms_paths[("73MHz", 14)]]
    run_tool(["wsclean", "-name", tmp_path / "deep", "-size", "2048", "2048", "-scale", "0.05",
              "-data-column", "MODEL_DATA", "-pol", "I", "-niter", "20000", "-auto-threshold", "0.05",
              "-mgain", "0.8", "-weight", "briggs", "0", "-j", "1", "-no-update-model-required", *ms])
    result = flux_check.run(flux_check.Options(deep_image=str(tmp_path / "deep-image.fits"), work_dir=str(tmp_path)))
    rows = [r for r in csv.DictReader(open(result.flux_csv)) if r["status"] == "ok"]
    assert len(rows) >= 3
    for r in rows:
        assert abs(float(r["ratio"]) - 1) < 0.10, r
        assert float(r["offset_arcmin"]) < 3, r

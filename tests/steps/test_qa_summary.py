"""qa-summary: one HTML page with every step's status, numbers and plots; absent or failed steps shown as such.

The unit's products come from the real steps (flux-check, photometry, transient-search on synthetic
images; snapshot QA's own plot function) so the page is checked against the files the pipeline writes.
"""
from __future__ import annotations

import csv
import html
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from orca_steps import dewarp, flux_check, photometry, qa_summary, transient_search
from orca_steps.errors import InputError
from orca_steps.logs import step_timer
from orca_steps.sim.images import write_sky_image
from orca_steps.skyimage import load_calibrators, spectrum_jy
from orca_steps.snapshot_qa import SnapshotStat, _plot
from sky_fixtures import time_at_lst, zenith_deg

FREQ = 75.4e6
TIME = time_at_lst(14.5)
ZEN = zenith_deg(TIME)
KW = dict(size=256, scale_deg=0.35, beam_fwhm_deg=1.5)
TARGET = (ZEN[0] + 6 / np.cos(np.deg2rad(ZEN[1] + 4)), ZEN[1] + 4)
TRANSIENT = (ZEN[0] - 9 / np.cos(np.deg2rad(ZEN[1] - 12)), ZEN[1] - 12)


def src(pos, flux):
    return {"ra_deg": pos[0], "dec_deg": pos[1], "flux_jy": flux}


def write_snapshot_qa(qa, n=12, bad=(3, 7)):
    """QA/snapshot_qa_73MHz.csv and its plot, as snapshot-qa writes them."""
    stats = [SnapshotStat(file=f"snap_{k:02d}.fits", utc=f"2025-06-15T04:{k:02d}:00", time_mjd_s=TIME + 60 * k,
                          rms=(5.0 if k in bad else 1.0 + 0.01 * k), peak=9.0, bad=k in bad,
                          reason="rms above median + 3 MAD_std" if k in bad else "") for k in range(n)]
    qa.mkdir(parents=True, exist_ok=True)
    with open(qa / "snapshot_qa_73MHz.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["file", "utc", "time_mjd_s", "rms", "peak", "bad", "reason"])
        for s in stats:
            w.writerow([s.file, s.utc, f"{s.time_mjd_s:.3f}", f"{s.rms:.6g}", f"{s.peak:.6g}", int(s.bad), s.reason])
    _plot(stats, 1.05, 2.0, 0.5, "73MHz", qa / "snapshot_rms_73MHz.png")


@pytest.fixture(scope="module")
def unit(tmp_path_factory):
    work = tmp_path_factory.mktemp("unit")
    img = work / "images"
    cals = [src((c["ra_deg"], c["dec_deg"]), spectrum_jy(c, FREQ)) for c in load_calibrators()]
    sky = cals + [src(TARGET, 6.0)]
    deep_i = write_sky_image(img / "deep-I-image.fits", sky, ZEN, TIME, FREQ, noise_jy=0.2, seed=1, **KW)
    deep_v = write_sky_image(img / "deep-V-image.fits", [], ZEN, TIME, FREQ, noise_jy=0.2, stokes="V", seed=2, **KW)
    intervals = []
    for k in range(6):
        t = TIME + (k - 3) * 600.0
        extra = [src(TRANSIENT, 8.0)] if k == 2 else []
        intervals.append(write_sky_image(img / f"int-t{k:04d}-I-image.fits", sky + extra, ZEN, t, FREQ, noise_jy=0.4,
                                         seed=10 + k, **KW))
        intervals.append(write_sky_image(img / f"int-t{k:04d}-V-image.fits", [src(TARGET, 5.0)] if k == 3 else [],
                                         ZEN, t, FREQ, noise_jy=0.4, stokes="V", seed=20 + k, **KW))
    targets = work / "targets.csv"
    targets.write_text(f"name,ra,dec,stokes\nStarX,{TARGET[0]:.5f},{TARGET[1]:.5f},IV\n"
                       f"Empty,{ZEN[0]:.5f},{ZEN[1] - 5:.5f},IV\n")
    write_snapshot_qa(work / "QA")
    flux = flux_check.run(flux_check.Options(deep_image=str(deep_i), noise_images=[str(deep_v)], work_dir=str(work)))
    phot = photometry.run(photometry.Options(work_dir=str(work), target_lists=[str(targets)], solar_system=False,
                                             deep_images=[str(deep_i), str(deep_v)],
                                             interval_images=[str(p) for p in intervals]))
    trans = transient_search.run(transient_search.Options(work_dir=str(work), deep_images=[str(deep_i), str(deep_v)],
                                                          interval_images=[str(p) for p in intervals]))
    # dewarp's result file as the step writes it when the catalogue gives too few anchors
    (work / "QA" / "dewarp.json").write_text(dewarp.Result(
        status="not enough anchors (3 < 6)", n_sources=11, n_anchors=3, rms_offset_arcmin=None,
        loo_rms_arcmin=None, dewarped=[], deep_image=str(deep_i), deep_images=[str(deep_i), str(deep_v)],
        interval_images=[str(p) for p in intervals]).model_dump_json(indent=1))
    with pytest.raises(RuntimeError):  # a step that failed: its timer records it
        with step_timer("hot-baselines", work):
            raise RuntimeError("boom")
    res = qa_summary.run(qa_summary.Options(work_dir=str(work), subband="73MHz", lst_label="14h",
                                            obs_date="2025-06-15"))  # clean-snapshots, compress: off
    page = (work / "QA" / "index.html").read_text()
    return dict(work=work, res=res, page=page, flux=flux, phot=phot, trans=trans)


def states(page: str) -> dict[str, str]:
    """step -> state from the status table at the top of the page."""
    return dict(re.findall(r"<tr><td><a href='#([\w-]+)'>[\w-]+</a></td><td><span class=\"badge\"[^>]*>([\w ]+)</span>",
                           page))


def test_status_table_lists_every_phase2_step_in_order(unit):
    got = states(unit["page"])
    assert list(got) == qa_summary.phase2_steps()
    assert got["snapshot-qa"] == "ok" and got["photometry"] == "ok" and got["transient-search"] == "ok"
    assert got["flux-check"] == "ok"
    assert got["hot-baselines"] == "failed"  # its timer says so, and it left no report
    assert got["dewarp"] == "attention"
    assert got["clean-snapshots"] == got["compress"] == got["cube"] == "skipped"
    assert got["concat"] == got["provenance"] == got["science-images"] == "not run"
    assert unit["res"].steps == got
    assert unit["res"].status == "failed"
    banner = re.search(r"<div class='banner' id='status'[^>]*>(.*?)</div>", unit["page"]).group(1)
    assert banner.startswith("Overall: FAILED") and "1 failed" in banner and "3 skipped" in banner
    assert unit["page"].index("id='status'") < unit["page"].index("<h2>Steps</h2>") < unit["page"].index("Snapshot QA")


def test_every_section_present(unit):
    for title in ("Snapshot QA", "Hot baselines", "Ionospheric dewarping", "Target photometry", "Transient candidates",
                  "Flux-scale check", "Image noise", "Provenance", "Step timings"):
        assert re.search(rf"<h2[^>]*>{title} <span", unit["page"]), title
    assert "QA summary: 73MHz 14h 2025-06-15" in unit["page"]


def test_numbers_from_the_products_appear(unit):
    page, work = unit["page"], unit["work"]
    assert "2 of 12 snapshots flagged" in page and "snap_03.fits" in page and "snap_07.fits" in page
    flux_rows = [r for r in csv.DictReader(open(work / "QA" / "flux_check.csv")) if r["status"] == "ok"]
    assert len(flux_rows) >= 2
    for r in flux_rows:
        assert f"<td>{r['name']}</td>" in page and f"<td>{r['ratio']}</td>" in page
    low = sum(r["status"].startswith("below") for r in csv.DictReader(open(work / "QA" / "flux_check.csv")))
    assert f"{len(flux_rows)} calibrators fitted, median ratio {unit['flux'].median_ratio:.3f}; {low} below 20 deg" in page
    noise = {r["stokes"]: float(r["inner_rms_jy"]) for r in csv.DictReader(open(work / "QA" / "image_noise.csv"))}
    assert f"I {noise['I']:.4g} Jy/beam" in page and f"V {noise['V']:.4g} Jy/beam" in page
    cands = list(csv.DictReader(open(work / "transients" / "candidates.csv")))
    assert unit["trans"].n_candidates == len(cands) >= 2
    assert f"{len(cands)} candidates, quality ok" in page
    for c in cands:
        assert f"<td>{c['id']}</td>" in page and f"<td>{c['snr']}</td>" in page
    dets = unit["phot"].detections
    assert any(d["target"] == "StarX" and d["stokes"] == "V" for d in dets)
    assert f"2 targets, 2 measured, {len(dets)} detections" in page
    assert "not enough anchors (3 &lt; 6): images not dewarped" in page
    timings = [json.loads(line) for line in open(work / "timings.jsonl")]
    assert {"flux-check", "photometry", "transient-search", "hot-baselines"} <= {t["step"] for t in timings}
    assert "failed: hot-baselines" in page


def test_page_is_self_contained(unit):
    srcs = re.findall(r"<img[^>]* src=\"([^\"]*)\"", unit["page"])
    assert len(srcs) >= 4  # snapshot rms, flux ratios, candidate cutouts, detected target
    assert all(s.startswith("data:image/png;base64,") for s in srcs)
    assert "href='http" not in unit["page"] and "<script" not in unit["page"]


def test_empty_work_dir_shows_not_run_without_crashing(tmp_path):
    res = qa_summary.qa_summary(qa_summary.Options(work_dir=str(tmp_path)))
    page = (tmp_path / "QA" / "index.html").read_text()
    got = states(page)
    assert {s for s, state in got.items() if state == "skipped"} == {"hot-baselines", "cube", "clean-snapshots", "compress"}
    assert {state for s, state in got.items() if state != "skipped"} == {"not run"} and res.status == "not run"
    assert page.count("Not run: no products in the work dir.") == 11  # every section but the timings, hot baselines, cube
    assert "Switched off for this unit." in page
    assert "No step timings recorded." in page


def test_a_recipe_changed_for_the_installed_wsclean_is_a_line_on_the_page(tmp_path):
    """The imaging steps record their recipe changes in their timers; the page lists each once, as attention,
    without changing the unit's status (the images were made)."""
    change = "I-Deep-Taper-Robust-0: wsclean 3.1.0: -multiscale dropped, single-scale clean (3.1 aborts on ...)"
    with step_timer("science-images", tmp_path) as timing:
        timing.update(recipe_changes=[change, change.replace("I-Deep-Taper-Robust-0", "I-Taper-10min")])
    with step_timer("science-images", tmp_path) as timing:  # a rerun records the same change again
        timing.update(recipe_changes=[change])
    res = qa_summary.qa_summary(qa_summary.Options(work_dir=str(tmp_path)))
    page = (tmp_path / "QA" / "index.html").read_text()
    assert re.search(r"<h2[^>]*>WSClean recipes <span class=\"badge\"[^>]*>attention</span>", page)
    lines = re.findall(r"<li class='recipe-change'>(.*?)</li>", page)
    assert lines == [html.escape(change), html.escape(change.replace("I-Deep-Taper-Robust-0", "I-Taper-10min"))]
    assert "wsclean-recipes" not in res.steps and res.status == "not run"  # not a step: the status stands

    unchanged = tmp_path / "unchanged"
    unchanged.mkdir()
    with step_timer("science-images", unchanged) as timing:
        timing.update(recipe_changes=[])
    qa_summary.qa_summary(qa_summary.Options(work_dir=str(unchanged)))
    page = (unchanged / "QA" / "index.html").read_text()
    assert "no recipe was changed for the installed WSClean" in page and "recipe-change" not in page


def test_unreadable_product_is_reported_not_fatal(tmp_path):
    (tmp_path / "QA").mkdir()
    (tmp_path / "QA" / "flux_check.csv").write_text("name,ratio,status\n3C286,abc,ok\n")
    (tmp_path / "QA" / "dewarp.json").write_text("{not json")
    res = qa_summary.qa_summary(qa_summary.Options(work_dir=str(tmp_path)))
    page = (tmp_path / "QA" / "index.html").read_text()
    assert res.steps["flux-check"] == res.steps["dewarp"] == "attention"
    assert "flux_check.csv could not be read" in page and "dewarp.json could not be read" in page


def test_missing_work_dir_fails_clearly_and_cli(tmp_path):
    with pytest.raises(InputError, match="nowhere: unit work dir does not exist"):
        qa_summary.qa_summary(qa_summary.Options(work_dir=str(tmp_path / "nowhere")))
    write_snapshot_qa(tmp_path / "QA", bad=range(6))
    out = subprocess.run([sys.executable, "-m", "orca_steps.cli", "qa-summary", "--work_dir", str(tmp_path),
                          "--skip_science", "true"], capture_output=True, text=True, check=True)
    result = json.loads(out.stdout)
    assert result["steps"]["snapshot-qa"] == "attention"  # 6 of 12 flagged: more than a quarter
    assert result["steps"]["photometry"] == "skipped" and result["html"].endswith("QA/index.html")


# --- deep images judged ---------------------------------------------------------------------------------------
def deep_image(work, name="73MHz-I-Deep-Taper-Robust-0.75-20250615_041000-image.fits", edit=None):
    """A zenith-centred deep image reaching past the horizon (256 px x 0.8 deg: corners are off the sky)."""
    from astropy.io import fits

    path = write_sky_image(work / "I" / "deep" / name, [src(ZEN, 200.0)], ZEN, TIME, size=256, scale_deg=0.8,
                           beam_fwhm_deg=2.0, noise_jy=1.0)
    if edit:
        with fits.open(path, mode="update") as hdul:
            edit(hdul[0].data[0, 0])
    return path


def judged(work):
    res = qa_summary.qa_summary(qa_summary.Options(work_dir=str(work), subband="73MHz"))
    return res, (work / "QA" / "index.html").read_text()


def test_plausible_deep_images_pass_and_blanks_off_the_sky_are_fine(tmp_path):
    def blank_corners(d):
        d[:5, :5] = np.nan  # ~140 deg from zenith: below the horizon, no sky there
        d[-5:, -5:] = np.nan
    deep_image(tmp_path, edit=blank_corners)
    res, page = judged(tmp_path)
    assert res.steps["science-images"] == "ok" and "1 deep images, rms and peak plausible" in page


@pytest.mark.parametrize("edit,problem", [
    (lambda d: d.__setitem__((128, 128), 3.6e25), "peak 3.6e+25 Jy/beam &gt; 1e+06"),  # the unpeeled 24-antenna hour
    (lambda d: d.__setitem__((slice(100, 150), slice(100, 150)), 3e4), "Jy/beam &gt; 1e+04"),  # rms ~1.2e4
    (lambda d: d.__setitem__((128, 128), np.nan), "1 non-finite pixels above the horizon mask"),
    (lambda d: d.__setitem__((128, 130), np.inf), "1 non-finite pixels above the horizon mask"),
])
def test_an_absurd_deep_image_fails_the_unit(tmp_path, edit, problem):
    deep_image(tmp_path, edit=edit)
    deep_image(tmp_path, name="73MHz-I-Deep-Taper-Robust-0-20250615_041000-image.fits")  # a sane one beside it
    res, page = judged(tmp_path)
    assert res.steps["science-images"] == "failed" and res.status == "failed"
    assert "1 of 2 deep images absurd" in page and problem in page

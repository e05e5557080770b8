"""The science steps and the QA page inside Phase 2: order, switches, inputs, and two real runs
(science switched off on a small hour; science on, on the shared processed hour)."""
import csv
import json
import re

import pytest

from orca_steps import qa_summary
from orca_steps.errors import InputError
from orca_steps.pipeline import PHASE2, UnitParameters
from orca_steps.process_subband import _module, preflight, process_subband
from phase2_unit import phase1, processed_unit, unit_options

SCIENCE = ["dewarp", "photometry", "transient-search", "flux-check"]  # orca's order
ORDER = [s.name for s in PHASE2]


def params(**overrides) -> UnitParameters:
    return UnitParameters(**{"ms_paths": [], "work_dir": "/w", "subband": "73MHz", "lst_label": "14h",
                             "obs_date": "2025-06-15", "run_label": "r", **overrides})


def test_science_follows_pb_correct_in_orcas_order_and_the_page_precedes_the_archive():
    at = ORDER.index("pb-correct")
    assert ORDER[at + 1: at + 5] == SCIENCE
    assert ORDER[-3:] == ["provenance", "qa-summary", "archive"]


def test_skip_science_switches_off_exactly_the_science_steps():
    on = [s.name for s in PHASE2 if s.enabled(params())]
    off = [s.name for s in PHASE2 if s.enabled(params(skip_science=True))]
    assert [s for s in on if s not in off] == SCIENCE
    assert "qa-summary" in off and "pb-correct" in off


def test_every_input_names_a_real_option_and_an_earlier_result_or_parameter():
    seen = []
    for step in PHASE2:
        options = _module(step.name).Options.model_fields
        for option, source in step.inputs.items():
            assert option in options, (step.name, option)
            if "." in source:
                producer, field = source.split(".", 1)
                assert producer in seen, (step.name, source)
                assert field in _module(producer).Result.model_fields, (step.name, source)
            else:
                assert source in UnitParameters.model_fields, (step.name, source)
        seen.append(step.name)
    # the QA page is filled by name from the unit's parameters: its switches must keep their names
    named = set(qa_summary.Options.model_fields) - {"flux_tolerance", "max_bad_snapshot_fraction", "max_rows",
                                                    "max_deep_rms_jy", "max_deep_peak_jy"}
    assert named <= set(UnitParameters.model_fields)


def test_preflight_names_a_missing_science_input(tmp_path):
    beam = tmp_path / "beam.h5"
    beam.write_bytes(b"")
    base = dict(work_dir=str(tmp_path), beam=str(beam), vlssr_catalog=str(tmp_path / "vlssr.txt"))
    with pytest.raises(InputError, match=r"vlssr\.txt: VLSSr catalogue for dewarp does not exist"):
        preflight(params(**base))
    (tmp_path / "vlssr.txt").write_text("")
    with pytest.raises(InputError, match=r"stars\.csv: target list does not exist"):
        preflight(params(**base, targets=[str(tmp_path / "stars.csv")]))
    preflight(params(**{**base, "vlssr_catalog": str(tmp_path / "gone.txt")}, skip_science=True))


def page_states(page: str) -> dict[str, str]:
    return dict(re.findall(r"<tr><td><a href='#([\w-]+)'>[\w-]+</a></td><td><span class=\"badge\"[^>]*>([\w ]+)</span>",
                           page))


def test_skip_science_runs_none_of_them_through_process_subband(tmp_path):
    root = tmp_path / "small"
    _, _, work, outs = phase1(root, n_antennas=24, n_integrations=3)
    options = unit_options(root, work, outs, image_size=128, image_scale_deg=1.0, hot_baselines=False,
                           clean_snapshots=False, compress_snapshots=False, skip_science=True,
                           vlssr_catalog=str(tmp_path / "absent.txt"))  # not needed when science is off
    result = process_subband(options)
    status = {r.step: r.status for r in result.steps}
    assert [s for s in ORDER if status[s] == "disabled"] == ["hot-baselines", *SCIENCE, "cube", "clean-snapshots", "compress"]
    assert status["qa-summary"] == "ran"
    for product in ("photometry", "transients", "detections", "QA/dewarp.json", "QA/flux_check.csv"):
        assert not (work / product).exists(), product
    timed = {json.loads(line)["step"] for line in (work / "timings.jsonl").read_text().splitlines()}
    assert not timed & set(SCIENCE)
    page = (work / "QA" / "index.html").read_text()
    assert {page_states(page)[s] for s in SCIENCE} == {"skipped"}
    archived = (root / "lustre" / "images" / "14h" / "2025-06-15" / "test-run" / "73MHz" / "QA" / "index.html")
    assert archived.read_text() == page


def test_science_products_and_qa_page_of_the_processed_hour():
    unit = processed_unit()
    work, archive = unit.work_dir, unit.archive
    dewarp = json.loads((work / "QA" / "dewarp.json").read_text())
    assert dewarp["status"] == "ok" or dewarp["status"].startswith("not enough anchors")
    if dewarp["status"] == "ok":  # no shift was simulated: the anchors sit within a fraction of a pixel (15')
        assert dewarp["rms_offset_arcmin"] < 5 and dewarp["loo_rms_arcmin"] < 5
    flux = [r for r in csv.DictReader(open(work / "QA" / "flux_check.csv")) if r["status"] == "ok"]
    noise = list(csv.DictReader(open(work / "QA" / "image_noise.csv")))
    assert sorted(r["stokes"] for r in noise) == ["I", "I", "I", "I", "V"]  # every deep image
    phot = list(csv.DictReader(open(work / "photometry" / "summary.csv")))
    assert {r["kind"] for r in phot} == {"solar-system"}  # no target list was given
    assert (work / "transients" / "summary.json").is_file()
    page = (archive / "QA" / "index.html").read_text()
    states = page_states(page)
    assert list(states) == qa_summary.phase2_steps()
    assert all(states[s] in ("ok", "attention") for s in SCIENCE), states
    assert states["hot-baselines"] != "skipped" and states["pb-correct"] == "ok"
    for r in flux:
        assert f"<td>{r['ratio']}</td>" in page

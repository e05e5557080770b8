"""process-subband end to end: every Phase 2 step in order, the archive, the input tree untouched; a
second run skips what is done; a run that crashed resumes where it stopped; bad input fails at once."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orca_steps import config, pb_correct
from orca_steps.archive import is_partial
from orca_steps.errors import ArchiveExistsError, InputError, MissingToolError
from orca_steps.pipeline import PHASE2
from orca_steps.process_subband import preflight, process_subband
from orca_steps.products import PARTIAL_MARKER
from phase1_data import tree_hash
from phase2_unit import phase1, processed_unit, unit_options

ORDER = [s.name for s in PHASE2]


def test_end_to_end_runs_every_step_in_order_and_archives():
    unit = processed_unit()
    assert [r.step for r in unit.result.steps] == ORDER
    enabled = [s.name for s in PHASE2 if s.enabled(unit.options)]
    assert [r.step for r in unit.result.steps if r.status == "ran"] == enabled
    assert [r.step for r in unit.result.steps if r.status != "ran"] == ["cube"]  # the only one off by default
    assert unit.result.archive_path == str(unit.archive) and (unit.archive / "MANIFEST.sha256").is_file()
    for name in enabled[:-1]:  # archive's marker too, but the work dir must exist for it
        assert (unit.work_dir / ".done" / f"{name}.json").is_file()
    assert tree_hash(unit.input_root) == unit.input_hash_before  # the "Lustre" inputs were never written


def test_a_second_run_skips_every_step_and_keeps_the_archive():
    unit = processed_unit()
    manifest = unit.archive / "MANIFEST.sha256"
    before = (manifest.read_text(), manifest.stat().st_mtime_ns)
    again = process_subband(unit.options)
    assert again.archive_path == unit.result.archive_path
    assert [r.status for r in again.steps] == ["skipped" if s.enabled(unit.options) else "disabled" for s in PHASE2]
    assert (manifest.read_text(), manifest.stat().st_mtime_ns) == before


@pytest.fixture(scope="module")
def small_unit(tmp_path_factory):
    """A cheaper hour (24 antennas, 3 integrations, 128-pixel images) for the crash and error tests."""
    root = tmp_path_factory.mktemp("small")
    _, input_root, work, outs = phase1(root, n_antennas=24, n_integrations=3)
    return root, input_root, work, outs


def test_a_crashed_run_resumes_where_it_stopped(small_unit, monkeypatch, tmp_path):
    root, input_root, work, outs = small_unit
    options = unit_options(root, work, outs, image_size=128, image_scale_deg=1.0, hot_baselines=False,
                           clean_snapshots=False, compress_snapshots=False)
    before = tree_hash(input_root)

    def node_lost(_options):
        raise RuntimeError("node lost")

    monkeypatch.setattr(pb_correct, "run", node_lost)
    with pytest.raises(RuntimeError, match="node lost"):
        process_subband(options)
    done = sorted(p.stem for p in (work / ".done").glob("*.json"))
    before_crash = ["concat", "fix-field", "rephase", "aoflagger", "pilot-snapshots", "snapshot-qa", "science-images"]
    assert done == sorted(before_crash)  # hot-baselines is switched off
    partial = next(Path(options.archive_root).rglob(PARTIAL_MARKER)).parent  # orca's best-effort archive
    assert json.loads((partial / PARTIAL_MARKER).read_text())["failed_step"] == "pb-correct"
    monkeypatch.undo()

    # The retry is a new process, through the CLI, as Argo runs it.
    ms_list = tmp_path / "ms.json"
    ms_list.write_text(json.dumps(outs))
    args = [sys.executable, "-m", "orca_steps.cli", "process-subband", "--ms_paths", f"@{ms_list}"]
    for key, value in options.model_dump(exclude={"ms_paths"}).items():
        if value is not None:
            args += [f"--{key}", str(value).lower() if isinstance(value, bool) else str(value)]
    proc = subprocess.run(args + ["--result-file", str(tmp_path / "result.json")], capture_output=True, text=True,
                          env={**os.environ})
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    status = {r["step"]: r["status"] for r in result["steps"]}
    assert [s for s in ORDER if status[s] == "skipped"] == before_crash
    assert [s for s in ORDER if status[s] == "disabled"] == ["hot-baselines", "cube", "clean-snapshots", "compress"]
    assert [s for s in ORDER if status[s] == "ran"] == ["pb-correct", "dewarp", "photometry", "transient-search",
                                                        "flux-check", "movies", "provenance", "qa-summary", "archive"]
    assert Path(result["archive_path"], "I", "deep").is_dir()
    assert Path(result["archive_path"]) == partial and not is_partial(partial)  # the complete one replaced it
    assert json.loads((tmp_path / "result.json").read_text())["archive_path"] == result["archive_path"]
    assert tree_hash(input_root) == before


def test_a_missing_strategy_fails_before_any_work(small_unit, tmp_path):
    root, _, _, outs = small_unit
    work = tmp_path / "work"
    work.mkdir()
    options = unit_options(root, work, outs, strategy=str(tmp_path / "LWA_opt_GH1.lua"))
    with pytest.raises(InputError, match=r"LWA_opt_GH1\.lua: AOFlagger strategy file does not exist"):
        process_subband(options)
    assert not (work / ".done").exists() and not list(work.glob("*.ms"))


def test_wsclean_missing_from_path_fails_before_any_work(small_unit, tmp_path, monkeypatch):
    root, _, _, outs = small_unit
    work = tmp_path / "work"
    work.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("aoflagger", "fpack"):  # everything else Phase 2 calls is there
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    monkeypatch.setenv("PATH", str(bin_dir))
    with pytest.raises(MissingToolError, match="'wsclean' is not on PATH"):
        process_subband(unit_options(root, work, outs))
    assert not (work / ".done").exists()


def test_missing_work_dir_and_beam_are_named(small_unit, tmp_path):
    root, _, _, outs = small_unit
    with pytest.raises(InputError, match="work dir does not exist"):
        process_subband(unit_options(root, tmp_path / "nowhere", outs))
    with pytest.raises(InputError, match=r"beam\.h5: beam model file does not exist"):
        process_subband(unit_options(root, tmp_path, outs, beam=str(tmp_path / "beam.h5")))


def test_an_archive_that_would_be_refused_fails_before_any_work_and_stale_partials_go(small_unit, tmp_path):
    root, _, _, outs = small_unit
    work = tmp_path / "work"
    work.mkdir()
    options = unit_options(root, work, outs, archive_root=str(tmp_path / "arch"))
    dest = Path(config.archive_dir(options.archive_root, options.lst_label, options.obs_date, options.run_label,
                                   options.subband))
    (dest / "QA").mkdir(parents=True)
    (dest / "QA" / "index.html").write_text("another run's page")
    stale = dest.parent / f".{dest.name}.partial-4242"  # a killed archive's hidden copy
    stale.mkdir()
    (stale / "half.fits").write_text("half")
    with pytest.raises(ArchiveExistsError, match="refused before Phase 2 starts"):
        process_subband(options)
    assert not stale.exists()
    assert not (work / ".done").exists() and not list(work.glob("*.ms")) and not (work / "timings.jsonl").exists()
    assert (dest / "QA" / "index.html").read_text() == "another run's page"
    preflight(options.model_copy(update={"overwrite": True}))  # told to replace it: no refusal

"""A rerun of Phase 1 skips what finished (its records unchanged) and re-copies nothing for an archived unit;
every MS Phase 1 or concat refused is listed with the step that refused it and why."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from casacore import tables

from orca_steps import collect_ms, unit_report
from orca_steps.prepare_ms import phase1_failure_record, phase1_marker, prepare_ms
from orca_steps.provenance import DONE_DIR
from phase1_data import make_source, tree_hash

NAMES = [f"20250615_04{m:02d}00_73MHz_averaged.ms" for m in (10, 11, 12)]


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    """Three MS of one hour on 'Lustre', with dead and noisy antennas to detect, and their cal tables."""
    root = tmp_path_factory.mktemp("rerun")
    entries = [make_source(root, name=n, n_antennas=24, dead_antennas=2, noisy_antennas=2, seed=k)
               for k, n in enumerate(NAMES)]
    return [str(ms) for ms, _ in entries], entries[0][1]


def cli_prepare(src, work, entry):
    return [sys.executable, "-m", "orca_steps.cli", "prepare-ms", "--src_ms", src, "--nvme_work_dir", str(work),
            "--bp_table", entry["bp_table"], "--xy_table", entry["xy_table"]]


def records(work):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in (Path(work) / "phase1_done").glob("*.json")}


def test_a_rerun_skips_finished_ms_and_keeps_their_records(hour, tmp_path):
    srcs, entry = hour
    work = tmp_path / "work"
    first = prepare_ms(srcs[0], str(work), entry["bp_table"], entry["xy_table"])
    assert first.flag_antennas.noisy, "the simulated hour has noisy antennas to re-detect"
    before, ms_hash = records(work), tree_hash(first.ms_path)
    again = prepare_ms(srcs[0], str(work), entry["bp_table"], entry["xy_table"])
    assert again.resumed and not first.resumed
    assert again.model_copy(update={"resumed": False}) == first  # the recorded result, not a new detection
    assert records(work) == before and tree_hash(first.ms_path) == ms_hash
    changed = prepare_ms(srcs[0], str(work), entry["bp_table"], entry["xy_table"], bad_antennas=[1])
    assert changed.flag_antennas.source == "list" and 1 in changed.flag_antennas.flagged  # new options: runs again


def test_an_archived_unit_is_not_copied_back_to_nvme(hour, tmp_path):
    srcs, entry = hour
    work = tmp_path / "work"
    done = prepare_ms(srcs[0], str(work), entry["bp_table"], entry["xy_table"])
    (work / DONE_DIR).mkdir()
    (work / DONE_DIR / "archive.json").write_text("{}")  # Phase 2 archived the unit, clean-up removed the MS
    shutil.rmtree(done.ms_path)
    again = prepare_ms(srcs[0], str(work), entry["bp_table"], entry["xy_table"])
    assert again.resumed and again.model_copy(update={"resumed": False}) == done
    assert not Path(done.ms_path).exists()
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(srcs[:1]))
    assert collect_ms.collect_ms(str(listed), 1.0, str(work)).n_prepared == 1


def test_kill_drill_rerun_leaves_finished_records_unchanged(hour, tmp_path):
    """Kill Phase 1 of an hour mid-way (SIGKILL, as a lost pod), rerun every MS: the finished ones are skipped."""
    srcs, entry = hour
    work = tmp_path / "work"
    for src in srcs[:2]:
        subprocess.run(cli_prepare(src, work, entry), check=True, capture_output=True)
    finished = records(work)
    hashes = {n: tree_hash(work / n) for n in NAMES[:2]}
    victim = subprocess.Popen(cli_prepare(srcs[2], work, entry), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (work / NAMES[2]).exists() and victim.poll() is None and time.time() < deadline:
        time.sleep(0.02)  # killed once its MS is on NVMe: in flagging or calibration
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert not phase1_marker(work, NAMES[2]).exists()
    for src in srcs:  # the rerun of the whole hour
        proc = subprocess.run(cli_prepare(src, work, entry), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    after = records(work)
    assert {n: after[n] for n in finished} == finished, "finished records rewritten by the rerun"
    assert {n: tree_hash(work / n) for n in NAMES[:2]} == hashes
    assert set(after) == {f"{n}.json" for n in NAMES}


def test_refused_ms_are_reported_with_step_and_reason(hour, tmp_path):
    srcs, entry = hour
    work = tmp_path / "work"
    broken = tmp_path / "lustre" / "20250615_041300_73MHz_averaged.ms"
    broken.parent.mkdir()
    subprocess.run(["cp", "-r", srcs[0], str(broken)], check=True)
    with tables.table(str(broken), readonly=False, ack=False) as tab:
        tab.removecols(["DATA"])
    lost = str(tmp_path / "lustre" / "20250615_041400_73MHz_averaged.ms")  # its pod died without a word
    prepare_ms(srcs[1], str(work), entry["bp_table"], entry["xy_table"])
    proc = subprocess.run(cli_prepare(str(broken), work, entry), capture_output=True, text=True)
    assert proc.returncode == 2
    failure = json.loads(phase1_failure_record(work, broken.name).read_text())
    assert failure["step"] == "flag-antennas" and "no DATA column" in failure["reason"]

    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([srcs[1], str(broken), lost]))
    result = collect_ms.collect_ms(str(listed), 0.3, str(work))
    by_ms = {f["ms"]: f for f in result.failures}
    assert by_ms[str(broken)]["step"] == "flag-antennas" and "no DATA column" in by_ms[str(broken)]["reason"]
    assert by_ms[lost] == {"ms": lost, "step": "prepare-ms", "reason": collect_ms.NO_RECORD}
    assert json.loads((work / collect_ms.PHASE1_FILE).read_text())["failures"] == result.failures

    (work / "73MHz_concat.json").write_text(json.dumps({"dropped": [
        {"path": str(work / NAMES[1]), "reason": "name says 73MHz, data are 78MHz"}]}))
    report = unit_report.unit_report(unit_report.Options(
        work_dir=str(work), status="Succeeded", workflow="wf", subband="73MHz", lst_label="04h",
        obs_date="2025-06-15", run_label="r1", ms_list_file=str(listed)))
    refused = json.loads(Path(report.report_file).read_text())["refused_ms"]
    assert [(r["ms"], r["step"]) for r in refused] == [(str(broken), "flag-antennas"), (lost, "prepare-ms"),
                                                       (str(work / NAMES[1]), "concat")]
    assert all(r["reason"] for r in refused)

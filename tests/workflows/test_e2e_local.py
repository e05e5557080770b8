"""End to end on this machine: the chart's rendered templates, run by the local runner, on simulated nights.

Pods are real ``orca-step`` processes on real (simulated) Measurement Sets; ``/fast`` and ``/lustre`` are
local folders. What is checked comes from the run record (node phases, hosts, start/end times, outputs)
and from the files the steps leave on the local /fast and /lustre.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orca_workflows.demo import CHART_FILES, DemoSite, night_parameters, prepare_site, run_workflow
from orca_workflows.localrun.report import node_overlaps, unit_spans, units
from orca_workflows.localrun.spec import load_documents

# Each test runs WSClean-based Phase 2 for one to four units on two cores: minutes, not seconds.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# The orchestration tests skip Phase 2's science steps (tested on their own and in the corrupt-MS test
# and the demo): the minutes of CI go to the scheduling behaviour they check.
ORCHESTRATION_ONLY = {"skip_science": "true"}
TEMPLATES = {"subband-prepare-ms", "subband-process", "subband-pipeline", "subband-hours", "subband-dispatch"}


@pytest.fixture(scope="module")
def chart() -> Path:
    names = {d["metadata"].get("name") for d in load_documents([CHART_FILES]) if d["kind"] == "WorkflowTemplate"}
    missing = TEMPLATES - names
    assert not missing, f"{CHART_FILES} lacks {sorted(missing)}: run `orca-argo render`"
    return CHART_FILES


def corrupt(demo: DemoSite, container_path: str) -> None:
    """Break one input MS on the local Lustre: its main table no longer opens."""
    (demo.local(container_path) / "table.dat").write_bytes(b"not a casacore table")


def pod_nodes(record: dict, template: str) -> list[dict]:
    """Final nodes of every pod run of a template (a retried pod counts once, by its Retry node)."""
    out = []
    for wf in record["workflows"]:
        for n in wf["nodes"]:
            if n["template"] == template and n["type"] in ("Pod", "Retry") and not n["retried"]:
                out.append({**n, "workflow": wf["name"], "wf_labels": wf["labels"]})
    return out


def unit_of(node: dict) -> tuple[str, str]:
    labels = {**node["wf_labels"], **(node.get("labels") or {})}
    return labels["orca/subband"], labels["orca/lst"]


def assert_archived(demo: DemoSite, record: dict, expected_units: set[tuple[str, str]]) -> None:
    done = {u.key[:2]: u for u in units(record)}
    for key in expected_units:
        unit = done.get(key)
        assert unit is not None and unit.status == "Succeeded", f"unit {key}: {unit}"
        assert unit.archive and Path(unit.archive_local).is_dir(), f"unit {key} has no archive: {unit.archive}"
        assert unit.archive.startswith("/lustre/"), unit.archive


def test_corrupt_ms_does_not_sink_the_hour(tmp_path, chart):
    demo = prepare_site(tmp_path / "site", subbands=("73MHz",), hours=(14,), n_integrations=3)
    bad = demo.ms_paths[("73MHz", 14)][1]
    corrupt(demo, bad)
    params = {**night_parameters(demo, "corrupt"), "subband": "73MHz", "lst_label": "14h",
              **{k: v for k, v in demo.refs("73MHz").items() if k in ("bp_table", "xy_table")}}
    params = {k: v for k, v in params.items() if k not in ("lst_start", "lst_end")}
    runner, wf = run_workflow(demo, "subband-pipeline", params, "corrupt", chart, progress="off")
    record = runner.record()

    prepared = pod_nodes(record, "prepare-ms")
    assert len(prepared) == 3
    failed = [n for n in prepared if n["phase"] != "Succeeded"]
    assert len(failed) == 1 and Path(bad).name in failed[0]["display_name"]
    # The hour completed with the two good MS ...
    assert wf.phase == "Succeeded", wf.message
    assert_archived(demo, record, {("73MHz", "14h")})
    work_dir = pod_nodes(record, "plan-unit")[0]["outputs"]["parameters"]
    work_dir = demo.local(next(p["value"] for p in work_dir if p["name"] == "work_dir"))
    # ... and reported the one that failed.
    report = json.loads((work_dir / "pipeline_report.json").read_text())
    assert [Path(p).name for p in report["failed_ms"]] == [Path(bad).name]
    assert report["status"] == "Succeeded"


def test_dynamic_mode_each_unit_once_one_unit_per_node(tmp_path, chart):
    pool = ["lwacalim00", "lwacalim01"]
    demo = prepare_site(tmp_path / "site", subbands=("73MHz", "78MHz"), hours=(14, 15), n_integrations=2,
                        site_overrides={"dynamic_pool": pool})
    params = {**night_parameters(demo, "dyn"), "dynamic_run_label": "dyn", **ORCHESTRATION_ONLY}
    runner, wf = run_workflow(demo, "subband-dispatch", params, "dyn", chart, progress="off")
    record = runner.record()
    assert wf.phase == "Succeeded", wf.message

    expected = {(sb, f"{h}h") for sb in ("73MHz", "78MHz") for h in (14, 15)}
    processed = [n for n in pod_nodes(record, "archive") if n["phase"] == "Succeeded"]   # Phase 2's last pod
    assert sorted(unit_of(n) for n in processed) == sorted(expected)          # each unit exactly once
    prepared = [n for n in pod_nodes(record, "prepare-ms") if n["phase"] == "Succeeded"]
    assert len(prepared) == 2 * len(expected)                                  # each MS once
    assert node_overlaps(record) == []                                         # one unit per node at a time
    spans = unit_spans(record)
    assert set(spans) == set(pool)                                             # both nodes worked
    for host, host_spans in spans.items():
        for _, _, key in host_spans:
            pods = [n for n in pod_nodes(record, "prepare-ms") + processed if unit_of(n) == key[:2]]
            assert {n["host"] for n in pods} == {host}                        # a unit stays on its node
    assert_archived(demo, record, expected)


def test_chain_goes_on_after_a_failed_hour(tmp_path, chart):
    demo = prepare_site(tmp_path / "site", subbands=("73MHz",), hours=(14, 15), n_integrations=2)
    corrupt(demo, demo.ms_paths[("73MHz", 14)][0])    # half of hour 14 is lost: below min_ms_fraction
    params = {**night_parameters(demo, "chain"), "min_ms_fraction": "0.9", **ORCHESTRATION_ONLY}
    runner, wf = run_workflow(demo, "subband-hours", params, "chain", chart, progress="off")
    record = runner.record()
    hours = {w["labels"].get("orca/lst"): w for w in record["workflows"]
             if w["workflowTemplate"] == "subband-pipeline"}
    assert set(hours) == {"14h", "15h"}
    assert hours["14h"]["phase"] == "Failed"
    assert hours["15h"]["phase"] == "Succeeded"
    assert hours["15h"]["started_at"] >= hours["14h"]["finished_at"]         # the chain, in order
    assert wf.phase == "Failed"                       # the night says an hour failed, once every hour ran
    assert wf.message.endswith("failed units: 73MHz 14h"), wf.message   # ... and which
    assert_archived(demo, record, {("73MHz", "15h")})
    # The failed hour is reported: in the night's run report and in the units table.
    report = json.loads(demo.local(f"{demo.site.runs_root}/chain/reports/{wf.name}.json").read_text())
    assert any(hours["14h"]["name"] in (n.get("message") or "") for n in report["failed_nodes"]), report
    failed_units = [u for u in units(record) if u.status != "Succeeded"]
    assert [u.key[:2] for u in failed_units] == [("73MHz", "14h")]


def _run_local_cmd(demo: DemoSite, chart: Path, params: dict, out: Path) -> list[str]:
    cmd = [sys.executable, "-m", "orca_workflows.cli", "run-local", "subband-hours", "-t", str(chart),
           "--configmap", str(demo.configmaps), "--out", str(out), "--progress", "plain"]
    for root, local in demo.volume_roots.items():
        cmd += ["--volume-root", f"{root}={local}"]
    for k, v in params.items():
        cmd += ["-p", f"{k}={v}"]
    return cmd


def test_rerun_after_a_killed_run_resumes(tmp_path, chart):
    demo = prepare_site(tmp_path / "site", subbands=("73MHz",), hours=(14, 15), n_integrations=2)
    params = {**night_parameters(demo, "resume"), **ORCHESTRATION_ONLY}
    first = tmp_path / "run1"
    proc = subprocess.Popen(_run_local_cmd(demo, chart, params, first), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "run1.log", "wb"))
    done_before_kill: list[str] = []
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            record = json.loads((first / "run.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        done_before_kill = [n["display_name"] for n in pod_nodes(record, "prepare-ms") if n["phase"] == "Succeeded"]
        if done_before_kill:
            break
    assert proc.poll() is None, "the first run ended before it could be killed"
    assert done_before_kill, (tmp_path / "run1.log").read_text()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)                                        # the node dies
    proc.wait()

    second = tmp_path / "run2"
    rerun = subprocess.run(_run_local_cmd(demo, chart, params, second), capture_output=True, text=True, timeout=1800)
    record = json.loads((second / "run.json").read_text())
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    resumed = {n["display_name"]: json.loads(n["outputs"]["result"])["resumed"]
               for n in pod_nodes(record, "prepare-ms") if n["phase"] == "Succeeded"}
    for name in done_before_kill:
        assert resumed[name] is True, f"{name} was prepared again instead of resumed"
    assert_archived(demo, record, {("73MHz", "14h"), ("73MHz", "15h")})

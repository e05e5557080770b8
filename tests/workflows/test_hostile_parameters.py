"""Hostile labels given to the chart's templates, run by the local runner as a cluster would run them: the
step refuses them in one line with exit 2, the retry expression does not retry it, nothing is written
outside the mounted roots (the archive path traversal the standalone subband-process template allowed)."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from orca_steps import config
from orca_steps.errors import InputError
from orca_workflows.demo import CHART_FILES
from orca_workflows.localrun import LocalRunError, LocalRunner
from orca_workflows.render import site_configmaps

GOOD = {"ms_paths": "[]", "work_dir": "/fast/pipeline/14h/2025-06-15/r1/73MHz", "subband": "73MHz",
        "lst_label": "14h", "obs_date": "2025-06-15", "run_label": "r1", "bp_table": "/lustre/refs/b.B",
        "xy_table": "/lustre/refs/x.Xf", "node": "lwacalim08"}


def runner(tmp_path):
    roots = {"/fast": tmp_path / "fast", "/lustre": tmp_path / "lustre"}
    for local in roots.values():
        local.mkdir()
    (tmp_path / "fast" / "pipeline" / "14h" / "2025-06-15" / "r1" / "73MHz").mkdir(parents=True)
    configmaps = tmp_path / "configmaps.yaml"
    configmaps.write_text(yaml.safe_dump_all(site_configmaps(config.site()), sort_keys=False))
    return LocalRunner([CHART_FILES / "subband-process.yaml", configmaps], tmp_path / "out", volume_roots=roots)


def files_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("param,value", [("run_label", "../../../escaped"), ("run_label", "a/b"),
                                         ("run_label", "a b"), ("obs_date", "2025-13-40"), ("obs_date", "../x")])
def test_subband_process_refuses_hostile_labels_once_and_writes_nothing(tmp_path, param, value):
    run = runner(tmp_path)
    before = files_under(tmp_path / "fast") + files_under(tmp_path / "lustre")
    wf = run.submit("subband-process", {**GOOD, param: value})
    run.wait()
    assert wf.phase == "Failed"
    pods = [n for n in wf.nodes.values() if n.type == "Pod" and n.template == "preflight"]
    assert len(pods) == 1, "a refused label is not retried"
    assert pods[0].outputs["exitCode"] == str(InputError.exit_code)
    errors = [line for line in Path(pods[0].logs["stderr"]).read_text().splitlines() if not line.startswith("{")]
    assert len(errors) == 1 and errors[0].startswith("orca-step phase2-preflight: error: ")
    assert f"{param} {value!r} is malformed" in errors[0]
    assert files_under(tmp_path / "fast") + files_under(tmp_path / "lustre") == before
    outside = [p for p in tmp_path.parent.rglob("escaped*")] + list(tmp_path.glob("escaped*"))
    assert outside == []


@pytest.mark.parametrize("param,value", [("lst_label", "25h"), ("lst_label", "-1h"), ("subband", "../73MHz")])
def test_enum_parameters_refuse_hostile_labels_at_submission(tmp_path, param, value):
    with pytest.raises(LocalRunError, match=param):
        runner(tmp_path).submit("subband-process", {**GOOD, param: value})


def test_prepare_ms_refuses_a_corrupt_ms_once_and_records_why(tmp_path):
    """A bad MS held its hour 113 s over 3 attempts: now one attempt, exit 2, its reason in the work dir."""
    import json
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "steps"))
    from phase1_data import make_source

    roots = {"/fast": tmp_path / "fast", "/lustre": tmp_path / "lustre"}
    roots["/fast"].mkdir()
    ms, entry = make_source(tmp_path, n_antennas=12)  # under <tmp>/lustre, with refs/
    data_file = ms / "table.f0"
    with open(data_file, "r+b") as fh:
        fh.truncate(data_file.stat().st_size // 2)
    configmaps = tmp_path / "configmaps.yaml"
    configmaps.write_text(yaml.safe_dump_all(site_configmaps(config.site()), sort_keys=False))
    run = LocalRunner([CHART_FILES / "subband-prepare-ms.yaml", configmaps], tmp_path / "out", volume_roots=roots)
    lustre = lambda p: "/lustre/" + str(Path(p).relative_to(tmp_path / "lustre"))  # noqa: E731
    wf = run.submit("subband-prepare-ms", {
        "src_ms": lustre(ms), "nvme_work_dir": "/fast/w", "bp_table": lustre(entry["bp_table"]),
        "xy_table": lustre(entry["xy_table"]), "node": "lwacalim08", "subband": "73MHz", "lst_label": "04h",
        "obs_date": "2025-06-15", "run_label": "r1"})
    run.wait()
    pods = [n for n in wf.nodes.values() if n.type == "Pod"]
    assert wf.phase == "Failed" and len(pods) == 1 and pods[0].outputs["exitCode"] == "2"
    record = json.loads((tmp_path / "fast" / "w" / "phase1_failed" / f"{ms.name}.json").read_text())
    assert record["step"] == "flag-antennas" and ms.name in record["reason"]

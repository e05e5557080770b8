"""provenance.json: versions from the tools themselves, every parameter, the inputs, the node, each
step's result and timing."""
import json

from orca_steps.pipeline import PHASE2
from orca_steps.provenance import Options, run
from phase2_unit import load_json, processed_unit


def test_the_archived_provenance_describes_the_run():
    unit = processed_unit()
    record = load_json(unit.archive / "provenance.json")
    versions = record["versions"]
    assert versions["orca-argo"] and versions["numpy"] and versions["python-casacore"] and versions["python"]
    assert versions["wsclean"].startswith("WSClean version 3.")
    assert versions["aoflagger"].startswith("AOFlagger 3.")
    assert versions["fpack"]
    assert record["parameters"] == json.loads(unit.options.model_dump_json())
    assert [i["path"] for i in record["inputs"]] == unit.ms_paths
    assert all(i["exists"] and i["bytes"] > 0 for i in record["inputs"])  # recorded before clean-up
    assert record["node"]["hostname"]
    names = [s.name for s in PHASE2]
    before = [s.name for s in PHASE2[: names.index("provenance")] if s.enabled(unit.options)]
    assert list(record["steps"]) == sorted(before)  # every step that ran before provenance, with its result
    assert record["steps"]["concat"]["result"]["concat_ms"].endswith("73MHz_concat.ms")
    timings = {t["step"]: t for t in record["timings"]}
    for step in ("concat", "aoflagger", "pilot-snapshots", "science-images", "pb-correct", "compress"):
        assert timings[step]["status"] == "ok" and timings[step]["seconds"] >= 0, step
    assert timings["pilot-snapshots"]["wsclean_seconds"] > 0 and timings["compress"]["fpack_seconds"] > 0


def test_node_name_comes_from_the_pod(tmp_path, monkeypatch):
    monkeypatch.setenv("NODE_NAME", "lwacalim08")
    (tmp_path / "timings.jsonl").write_text('{"step": "concat", "seconds": 1.5}\n')
    result = run(Options(ms_paths=[str(tmp_path / "missing.ms")], work_dir=str(tmp_path), subband="73MHz",
                         lst_label="14h", obs_date="2025-06-15", run_label="r"))
    record = load_json(result.provenance)
    assert record["node"]["node_name"] == "lwacalim08"
    assert record["inputs"] == [{"path": str(tmp_path / "missing.ms"), "exists": False, "bytes": None}]
    assert record["timings"][0] == {"step": "concat", "seconds": 1.5}
    assert record["steps"] == {}

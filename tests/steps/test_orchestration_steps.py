"""The bookkeeping steps the Argo templates call: dispatch queue, Phase 1 fan-in, unit and run reports."""
import json
from datetime import datetime, timedelta, timezone

import pytest

from orca_steps import collect_ms, config, run_report, unit_report, work_queue
from orca_steps.fileio import write_json
from orca_steps.prepare_ms import phase1_marker
from orca_steps.discover import WorkUnit
from orca_steps.errors import InputError


def units(n):
    return [WorkUnit(id=f"73MHz_{h:02d}h_2025-06-15", subband="73MHz", lst_label=f"{h:02d}h", obs_date="2025-06-15",
                     node="node-a", work_dir=f"/fast/{h}", ms_list_file=f"/l/{h}.json", n_ms=3) for h in range(n)]


# --- dispatch queue ----------------------------------------------------------------------------------------
def test_each_unit_goes_to_exactly_one_worker(tmp_path):
    q = work_queue.create_or_resume(tmp_path / "q.json", "night1", units(5))
    taken = []
    workers = ["node-a", "node-b"]
    for step in range(10):  # workers alternate; each finishes before it claims again
        worker = workers[step % 2]
        unit = work_queue.claim(q, worker, "wf-1")
        if unit is None:
            continue
        taken.append((unit["id"], worker))
        work_queue.finish(q, unit["id"], "Failed" if len(taken) == 2 else "Succeeded", "wf-1")
    assert sorted(u for u, _ in taken) == [u.id for u in units(5)]  # every unit, each once
    states = {u["id"]: u["state"] for u in work_queue.load(q)["units"]}
    assert sorted(states.values()) == ["failed"] + ["succeeded"] * 4
    assert work_queue.claim(q, "node-a", "wf-1") is None  # a failed unit is not handed out again in this run


def test_a_retried_claim_gets_the_same_unit(tmp_path):
    q = work_queue.create_or_resume(tmp_path / "q.json", "night1", units(3))
    first = work_queue.claim(q, "node-a", "wf-1")
    assert work_queue.claim(q, "node-a", "wf-1")["id"] == first["id"]  # the claim pod was retried
    assert work_queue.claim(q, "node-b", "wf-1")["id"] != first["id"]


def test_a_rerun_resumes_the_queue(tmp_path):
    q = work_queue.create_or_resume(tmp_path / "q.json", "night1", units(4))
    a = work_queue.claim(q, "node-a", "wf-1")
    work_queue.finish(q, a["id"], "Succeeded", "wf-1")
    b = work_queue.claim(q, "node-a", "wf-1")
    work_queue.finish(q, b["id"], "Error", "wf-1")
    c = work_queue.claim(q, "node-b", "wf-1")  # wf-1 is stopped while c runs
    work_queue.create_or_resume(q, "night1", units(4))  # the rerun's discover keeps the states
    assert work_queue.claim(q, "node-c", "wf-2")["id"] == units(4)[3].id  # pending first; c may still run
    work_queue.finish(q, units(4)[3].id, "Succeeded", "wf-2")
    assert work_queue.claim(q, "node-c", "wf-2")["id"] == b["id"]  # failed in wf-1
    work_queue.finish(q, b["id"], "Succeeded", "wf-2")
    assert work_queue.claim(q, "node-c", "wf-2") is None  # c is wf-1's until wf-1's exit handler releases it
    assert work_queue.release(q, "wf-1") == [c["id"]]
    again = []
    while (u := work_queue.claim(q, "node-b", "wf-2")) is not None:
        again.append(u["id"])
        work_queue.finish(q, u["id"], "Succeeded", "wf-2")
    assert again == [c["id"]]
    with pytest.raises(InputError, match="belongs to"):
        work_queue.create_or_resume(q, "night2", units(1))
    with pytest.raises(InputError, match="claimed by"):
        work_queue.finish(q, a["id"], "Succeeded", "wf-3")


def test_a_unit_held_by_a_run_killed_without_its_exit_handler_is_taken_after_its_lease(tmp_path):
    q = work_queue.create_or_resume(tmp_path / "q.json", "night1", units(1))
    held = work_queue.claim(q, "node-a", "wf-1")
    assert work_queue.claim(q, "node-b", "wf-2") is None
    queue = work_queue.load(q)
    queue["units"][0]["claimed_at"] = (datetime.now(timezone.utc) - work_queue.RUNNING_LEASE
                                       - timedelta(minutes=1)).isoformat(timespec="seconds")
    write_json(q, queue)
    assert work_queue.claim(q, "node-b", "wf-2")["id"] == held["id"]


# --- Phase 1 fan-in ---------------------------------------------------------------------------------------
def hour(tmp_path, n):
    srcs = [f"/lustre/in/2025061{k}_040000_73MHz_averaged.ms" + (".tar" if k % 2 else "") for k in range(n)]
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(srcs))
    work = tmp_path / "work"
    work.mkdir()
    return srcs, listed, work


def prepared(work, src, marker=True):
    """What a successful prepare-ms leaves: the NVMe MS and, last, its marker."""
    ms = work / collect_ms.nvme_name(src)
    ms.mkdir()
    if marker:
        write_json(phase1_marker(work, ms.name), {"ms_path": str(ms)})
    return ms


def test_collect_keeps_the_survivors_and_names_the_failures(tmp_path):
    srcs, listed, work = hour(tmp_path, 5)
    done = [prepared(work, s) for s in srcs[:3]]
    prepared(work, srcs[3], marker=False)  # a pod killed mid-copy: the MS exists, its marker does not
    result = collect_ms.collect_ms(str(listed), 0.5, str(work))
    assert json.loads(open(result.ms_list_file).read()) == [str(p) for p in done]  # time order
    assert result.failed_ms == srcs[3:] and result.n_expected == 5 and result.n_prepared == 3 and result.n_dropped == 2
    assert json.loads((work / collect_ms.PHASE1_FILE).read_text())["failed"] == srcs[3:]


def test_collect_fails_the_hour_below_min_ms_fraction(tmp_path):
    srcs, listed, work = hour(tmp_path, 4)
    prepared(work, srcs[0])
    with pytest.raises(InputError, match="only 1 of 4 MS survived"):
        collect_ms.collect_ms(str(listed), 0.5, str(work))
    assert json.loads((work / collect_ms.PHASE1_FILE).read_text())["fraction"] == 0.25  # still recorded
    collect_ms.collect_ms(str(listed), 0.25, str(work))


def test_collect_fails_cleanly_when_every_ms_failed(tmp_path):
    srcs, listed, work = hour(tmp_path, 3)
    with pytest.raises(InputError, match="only 0 of 3 MS survived"):
        collect_ms.collect_ms(str(listed), 0.0, str(work))
    assert json.loads((work / collect_ms.PHASE1_FILE).read_text())["failed"] == srcs


# --- reports -------------------------------------------------------------------------------------------------
def test_unit_report_cleans_nvme_but_keeps_the_report(tmp_path):
    site = config.SiteConfig(nvme_root=str(tmp_path / "fast"))
    srcs, listed, _ = hour(tmp_path, 2)
    work = tmp_path / "fast" / "15h" / "2025-06-15" / "r" / "73MHz"
    (work / "x.ms").mkdir(parents=True)
    (work / collect_ms.PHASE1_FILE).write_text(json.dumps({"failed": [srcs[1]]}))
    opts = dict(work_dir=str(work), status="Failed", workflow="wf", subband="73MHz", lst_label="15h",
                obs_date="2025-06-15", run_label="r", ms_list_file=str(listed), cleanup_nvme=True)
    result = unit_report.unit_report(unit_report.Options(**opts), site)
    assert result.cleaned and [p.name for p in work.iterdir()] == [unit_report.REPORT_FILE]
    report = json.loads((work / unit_report.REPORT_FILE).read_text())
    assert report["status"] == "Failed" and report["failed_ms"] == [srcs[1]] and report["n_expected"] == 2
    outside = tmp_path / "lustre" / "w"
    outside.mkdir(parents=True)
    with pytest.raises(InputError, match="outside the NVMe root"):
        unit_report.unit_report(unit_report.Options(**{**opts, "work_dir": str(outside)}), site)


def test_run_report_reads_argo_failures_and_the_queue(tmp_path):
    site = config.SiteConfig(runs_root=str(tmp_path / "runs"))
    failed = [{"displayName": "hour(1:15h)", "phase": "Failed", "message": "child failed"}]
    for text in (json.dumps(failed), json.dumps(json.dumps(failed))):  # Argo may quote it once more
        assert run_report.parse_failures(text) == failed
    assert run_report.parse_failures("null") == [] and run_report.parse_failures("") == []
    offloaded = tmp_path / "argo_arg_7.txt"   # Argo's executor passes an argument over 128 KiB as @file
    offloaded.write_text(json.dumps(json.dumps(failed)))
    assert run_report.parse_failures(f"@{offloaded}") == failed
    q = work_queue.create_or_resume(work_queue.queue_path(site, "night1"), "night1", units(2))
    work_queue.finish(q, work_queue.claim(q, "node-a", "wf")["id"], "Succeeded", "wf")
    term = tmp_path / "termination-log"
    # a unit the queue still holds did not succeed: the night fails naming it, after writing its report
    with pytest.raises(run_report.UnitsFailed, match="^failed units: 73MHz 01h$"):
        run_report.run_report(run_report.Options(workflow="wf", run_label="r", status="Succeeded",
                                                 failures=json.dumps(failed), dynamic_run_label="night1",
                                                 termination_log=str(term)), site)
    assert term.read_text() == "failed units: 73MHz 01h"   # Argo's message for the pod, then the night
    report = json.loads((tmp_path / "runs" / "r" / "reports" / "wf.json").read_text())
    assert report["failed_nodes"] == failed and report["queue"]["counts"] == {
        "pending": 1, "running": 0, "succeeded": 1, "failed": 0}
    assert report["failed_units"] == ["73MHz 01h"]


def test_run_report_names_the_failed_hours_of_a_static_night(tmp_path):
    # Argo names a loop node after its map item, keys sorted (operator.go processItem, 4104-4121)
    site = config.SiteConfig(runs_root=str(tmp_path / "runs"))
    failed = [{"displayName": "chains(1:hours_file:/l/78MHz_chain.json,node:n2,subband:78MHz)", "phase": "Failed"},
              {"displayName": "hour(2:lst_label:15h,ms_list_file:/l/u.json,obs_date:2025-06-15,subband:78MHz)",
               "phase": "Failed"},
              {"displayName": "hour(0:lst_label:03h,ms_list_file:/l/v.json,obs_date:2025-06-15,subband:73MHz)",
               "phase": "Error"}]
    options = run_report.Options(workflow="wf", run_label="r", status="Succeeded", failures=json.dumps(failed))
    with pytest.raises(run_report.UnitsFailed, match="^failed units: 73MHz 03h, 78MHz 15h$"):
        run_report.run_report(options, site)
    result = run_report.run_report(options.model_copy(update={"failures": "null"}), site)
    assert result.failed_units == []   # nothing failed: the exit handler succeeds
    many = [(f"{sb}MHz", f"{h:02d}h") for sb in (73, 78) for h in range(24)]
    text = run_report.failed_units_message(many)
    assert text.endswith(" and 8 more") and len(text.encode()) < 4096   # a termination message keeps 4 KiB


def test_chain_hours_refuses_a_file_that_is_not_a_list_of_hours(tmp_path):
    from orca_steps import chain_hours
    from orca_steps.errors import InputError

    bad = tmp_path / "chain.json"
    bad.write_text('{"lst_label": "14h"}')
    with pytest.raises(InputError, match="chain.json"):
        chain_hours.run(chain_hours.Options(hours_file=str(bad)))
    with pytest.raises(InputError, match="missing.json"):
        chain_hours.run(chain_hours.Options(hours_file=str(tmp_path / "missing.json")))

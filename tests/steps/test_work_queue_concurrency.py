"""The dispatch queue's claim is atomic on its own: concurrent processes never claim one unit twice."""
import multiprocessing

from orca_steps import work_queue
from orca_steps.discover import WorkUnit

N_UNITS, N_WORKERS = 40, 6


def _units(n):
    return [WorkUnit(id=f"73MHz_{k:03d}", subband="73MHz", lst_label="14h", obs_date="2025-06-15", node="n",
                     work_dir=f"/fast/{k}", ms_list_file=f"/l/{k}.json", n_ms=1) for k in range(n)]


def _drain(args):
    """One worker process: claim and finish until the queue is empty; returns the ids it claimed."""
    queue, worker, workflow, start = args
    start.wait()
    taken = []
    while (unit := work_queue.claim(queue, worker, workflow)) is not None:
        taken.append(unit["id"])
        work_queue.finish(queue, unit["id"], "Succeeded", workflow)
    return taken


def _run_workers(queue, workflows):
    ctx = multiprocessing.get_context("fork")
    with ctx.Manager() as manager, ctx.Pool(len(workflows)) as pool:
        start = manager.Event()
        pending = pool.map_async(_drain, [(str(queue), f"node-{k}", wf, start) for k, wf in enumerate(workflows)])
        start.set()
        return pending.get(timeout=300)


def test_concurrent_workers_of_one_run_claim_each_unit_exactly_once(tmp_path):
    queue = work_queue.create_or_resume(tmp_path / "q.json", "night1", _units(N_UNITS))
    claims = [uid for taken in _run_workers(queue, ["wf-1"] * N_WORKERS) for uid in taken]
    assert sorted(claims) == [u.id for u in _units(N_UNITS)]  # each exactly once, none lost
    final = work_queue.load(queue)["units"]
    assert all(u["state"] == work_queue.SUCCEEDED and u["attempts"] == 1 for u in final)


def test_two_runs_on_one_queue_share_its_pending_units(tmp_path):
    """Two dispatch runs on one queue (two controllers, a queue shared by mistake) never both take a unit."""
    queue = work_queue.create_or_resume(tmp_path / "q.json", "night1", _units(N_UNITS))
    claims = [uid for taken in _run_workers(queue, ["wf-a", "wf-b"] * (N_WORKERS // 2)) for uid in taken]
    assert sorted(claims) == [u.id for u in _units(N_UNITS)]

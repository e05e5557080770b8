"""The dispatch queue: (subband, hour) units in one JSON file on shared storage.

orca kept this queue in Redis. Every read-modify-write of the file (create, claim, finish) holds an
exclusive lock on ``<queue>.lock`` (``flock``; on Lustre the client must be mounted with ``flock``), so a
claim is atomic whatever runs it: the Argo mutex of one dispatch run, two runs on one queue, or a person.
A claim hands out pending units first, so two runs on one queue share them; a unit another run holds is
never taken while that run may still work on it: only once that run's exit handler released it
(``release``: run-report marks the units it left running as failed) or its lease ran out. A unit is handed out once per workflow run: a
failed unit is not retried by another worker. A later run with the same queue (``dynamic_run_label``)
resumes it: units that succeeded are skipped; units a stopped or earlier run left running or failed are
handed out again.
"""
from __future__ import annotations

import fcntl
import json
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import config
from .discover import WorkUnit
from .fileio import write_json
from .errors import InputError
from .labels import check_run_label, path_under

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
# A unit another run holds is handed out again after this long: beyond any unit's Phase 1 and Phase 2
# deadlines with their retries, so its run (killed without its exit handler) can no longer be working on it.
RUNNING_LEASE = timedelta(hours=36)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def queue_path(site: config.SiteConfig, dynamic_run_label: str) -> Path:
    """Where the queue named ``dynamic_run_label`` lives (shared storage)."""
    return path_under(site.runs_root, "queues", f"{check_run_label(dynamic_run_label, 'dynamic_run_label')}.json")


@contextmanager
def locked(path: str | Path):
    """Hold the queue's lock file exclusively (blocking) for one read-modify-write of the queue."""
    lock_file = Path(path).with_name(Path(path).name + ".lock")
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: dispatch queue does not exist (run discover with queue_file first)")
    try:
        queue = json.loads(path.read_text())
        assert isinstance(queue["units"], list)
    except (ValueError, KeyError, AssertionError):
        raise InputError(f"{path}: dispatch queue is not a valid queue file") from None
    return queue


def create_or_resume(path: str | Path, dynamic_run_label: str, units: list[WorkUnit]) -> Path:
    """Write the queue for ``units``; an existing queue of the same label keeps its units' states."""
    path = Path(path)
    with locked(path):
        return _create_or_resume(path, dynamic_run_label, units)


def _create_or_resume(path: Path, dynamic_run_label: str, units: list[WorkUnit]) -> Path:
    old = {}
    if path.exists():
        queue = load(path)
        if queue.get("dynamic_run_label") != dynamic_run_label:
            raise InputError(f"{path}: queue belongs to {queue.get('dynamic_run_label')!r}, not {dynamic_run_label!r}")
        old = {u["id"]: u for u in queue["units"]}
    entries = []
    for unit in units:
        state = {k: old[unit.id][k] for k in ("state", "worker", "workflow", "claimed_at", "finished_at", "attempts")
                 } if unit.id in old else {"state": PENDING, "worker": "", "workflow": "", "claimed_at": "",
                                           "finished_at": "", "attempts": 0}
        entries.append({**unit.model_dump(), **state})
    known = {e["id"] for e in entries}
    entries += [u for uid, u in old.items() if uid not in known]  # units of an earlier discovery stay queued
    return write_json(path, {"dynamic_run_label": dynamic_run_label, "units": entries})


def claim(path: str | Path, worker: str, workflow: str) -> dict | None:
    """Hand ``worker`` its next unit (or the one it already holds in this workflow); None when empty.

    Pending units go first; then units another run left failed, or running beyond its lease."""
    with locked(path):
        queue = load(path)
        units = queue["units"]
        for unit in units:
            if unit["state"] == RUNNING and unit["worker"] == worker and unit["workflow"] == workflow:
                return unit
        pending = [u for u in units if u["state"] == PENDING]
        left_by_earlier_run = [u for u in units if u["workflow"] != workflow and (
            u["state"] == FAILED or (u["state"] == RUNNING and _lease_over(u["claimed_at"])))]
        for unit in pending + left_by_earlier_run:
            unit.update(state=RUNNING, worker=worker, workflow=workflow, claimed_at=_now(), finished_at="",
                        attempts=unit["attempts"] + 1)
            write_json(path, queue)
            return unit
        return None


def _lease_over(claimed_at: str) -> bool:
    try:
        return datetime.now(timezone.utc) - datetime.fromisoformat(claimed_at) > RUNNING_LEASE
    except (TypeError, ValueError):
        return True


def release(path: str | Path, workflow: str) -> list[str]:
    """A run ends (its exit handler): the units it still holds become failed, for a later run to take."""
    with locked(path):
        queue = load(path)
        released = [u for u in queue["units"] if u["state"] == RUNNING and u["workflow"] == workflow]
        for unit in released:
            unit.update(state=FAILED, finished_at=_now())
        if released:
            write_json(path, queue)
        return [u["id"] for u in released]


def finish(path: str | Path, unit_id: str, status: str, workflow: str) -> dict:
    """Record how a unit ended (``status`` is the Argo phase of its run: Succeeded, Failed, Error...)."""
    with locked(path):
        queue = load(path)
        matches = [u for u in queue["units"] if u["id"] == unit_id]
        if not matches:
            raise InputError(f"{path}: no unit {unit_id!r} in the queue")
        unit = matches[0]
        if unit["workflow"] != workflow:
            raise InputError(f"{path}: unit {unit_id} was claimed by {unit['workflow']!r}, not {workflow!r}")
        unit.update(state=SUCCEEDED if status == "Succeeded" else FAILED, finished_at=_now())
        write_json(path, queue)
        return unit


def summary(queue: dict) -> dict[str, int]:
    counts = {PENDING: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0}
    for unit in queue["units"]:
        counts[unit["state"]] += 1
    return counts

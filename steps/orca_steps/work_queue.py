"""The dispatch queue: (subband, hour) units in one JSON file on shared storage.

orca kept this queue in Redis. Here the Argo workflow serialises every claim and finish with one Argo
mutex, so a plain file written atomically is enough. A unit is handed out once per workflow run: a
failed unit is not retried by another worker. A later run with the same queue (``dynamic_run_label``)
resumes it: units that succeeded are skipped; units a stopped or earlier run left running or failed are
handed out again.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from . import config
from .discover import WorkUnit, write_json_atomic
from .errors import InputError
from .labels import check_run_label, path_under

PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def queue_path(site: config.SiteConfig, dynamic_run_label: str) -> Path:
    """Where the queue named ``dynamic_run_label`` lives (shared storage)."""
    return path_under(site.runs_root, "queues", f"{check_run_label(dynamic_run_label, 'dynamic_run_label')}.json")


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
    return write_json_atomic(path, {"dynamic_run_label": dynamic_run_label, "units": entries})


def claim(path: str | Path, worker: str, workflow: str) -> dict | None:
    """Hand ``worker`` its next unit (or the one it already holds in this workflow); None when empty."""
    queue = load(path)
    units = queue["units"]
    for unit in units:
        if unit["state"] == RUNNING and unit["worker"] == worker and unit["workflow"] == workflow:
            return unit
    for unit in units:
        left_by_earlier_run = unit["state"] in (RUNNING, FAILED) and unit["workflow"] != workflow
        if unit["state"] == PENDING or left_by_earlier_run:
            unit.update(state=RUNNING, worker=worker, workflow=workflow, claimed_at=_now(), finished_at="",
                        attempts=unit["attempts"] + 1)
            write_json_atomic(path, queue)
            return unit
    return None


def finish(path: str | Path, unit_id: str, status: str, workflow: str) -> dict:
    """Record how a unit ended (``status`` is the Argo phase of its run: Succeeded, Failed, Error...)."""
    queue = load(path)
    matches = [u for u in queue["units"] if u["id"] == unit_id]
    if not matches:
        raise InputError(f"{path}: no unit {unit_id!r} in the queue")
    unit = matches[0]
    if unit["workflow"] != workflow:
        raise InputError(f"{path}: unit {unit_id} was claimed by {unit['workflow']!r}, not {workflow!r}")
    unit.update(state=SUCCEEDED if status == "Succeeded" else FAILED, finished_at=_now())
    write_json_atomic(path, queue)
    return unit


def summary(queue: dict) -> dict[str, int]:
    counts = {PENDING: 0, RUNNING: 0, SUCCEEDED: 0, FAILED: 0}
    for unit in queue["units"]:
        counts[unit["state"]] += 1
    return counts

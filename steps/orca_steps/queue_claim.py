"""Step ``queue-claim``: a dispatch worker (one node) takes its next (subband, hour) unit.

Argo runs it under the queue's mutex, and the queue file has its own lock (``work_queue.locked``), so
claims never overlap even without it. Every output is always written (empty strings when the queue is
empty) because Argo reads each from its own file.
"""
from __future__ import annotations

from pydantic import BaseModel, Field

from . import work_queue
from .logs import step_timer


class Options(BaseModel):
    queue_file: str = Field(description="the dispatch queue (written by discover)")
    worker: str = Field(description="the worker's node (kubernetes.io/hostname)")
    workflow: str = Field(description="name of the dispatch workflow run claiming")


class Result(BaseModel):
    has_unit: bool
    unit_id: str = ""
    subband: str = ""
    lst_label: str = ""
    obs_date: str = ""
    ms_list_file: str = ""
    n_ms: int = 0


def run(options: Options) -> Result:
    with step_timer("queue-claim", worker=options.worker):
        unit = work_queue.claim(options.queue_file, options.worker, options.workflow)
    if unit is None:
        return Result(has_unit=False)
    return Result(has_unit=True, unit_id=unit["id"], subband=unit["subband"], lst_label=unit["lst_label"],
                  obs_date=unit["obs_date"], ms_list_file=unit["ms_list_file"], n_ms=unit["n_ms"])

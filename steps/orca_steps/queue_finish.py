"""Step ``queue-finish``: record in the dispatch queue how a claimed unit ended."""
from __future__ import annotations

from pydantic import BaseModel, Field

from . import work_queue
from .logs import step_timer


class Options(BaseModel):
    queue_file: str = Field(description="the dispatch queue")
    unit_id: str = Field(description="the unit the worker claimed")
    status: str = Field(description="Argo phase of the unit's run: Succeeded, Failed, Error, ...")
    workflow: str = Field(description="name of the dispatch workflow run")


class Result(BaseModel):
    unit_id: str
    state: str
    counts: dict[str, int] = Field(description="units per state in the queue after this one")


def run(options: Options) -> Result:
    with step_timer("queue-finish", unit=options.unit_id):
        unit = work_queue.finish(options.queue_file, options.unit_id, options.status, options.workflow)
    counts = work_queue.summary(work_queue.load(options.queue_file))
    return Result(unit_id=unit["id"], state=unit["state"], counts=counts)

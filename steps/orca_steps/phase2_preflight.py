"""Step ``phase2-preflight``: the first pod of Argo's Phase 2 (template ``subband-process``).

Checks everything that would fail hours later (files, tools, an archive that would be refused) before any
work, records the unit's validated parameters for the step pods, and returns the value of every switch
of ``pipeline.PHASE2``: the template's ``when`` expressions test these outputs, so the modes' implications
are computed by ``UnitParameters`` alone.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, create_model

from .logs import step_timer
from .pipeline import PHASE2, UnitParameters, switch_names
from .process_subband import UNIT_FILE, start


class Options(UnitParameters):
    """The unit's parameters, as process-subband takes them."""


Result = create_model(
    "Result", __base__=BaseModel,
    unit_file=(str, Field(description="the unit's validated parameters, read by every later step pod")),
    **{name: (bool, Field(description=f"switch {name}: the steps it enables run")) for name in switch_names(PHASE2)})


def run(options: Options) -> BaseModel:
    params = UnitParameters(**options.model_dump())
    work_dir = params.work_dir if Path(params.work_dir).is_dir() else None
    with step_timer("phase2-preflight", work_dir, subband=params.subband, lst=params.lst_label):
        switches = start(params)
    return Result(unit_file=str(Path(params.work_dir) / UNIT_FILE), **switches)

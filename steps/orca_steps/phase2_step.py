"""Step ``phase2-step``: one step of Phase 2 in its own pod (Argo template ``subband-process``).

Reads the unit's parameters that preflight recorded, takes the results of the earlier steps its inputs
name (Argo passes their ``result`` output parameters), and runs the step exactly as the one-process
``process-subband`` does (``process_subband.run_step``: same options, same resume markers). Its result is
the step's own result, so Argo's output parameters are the step's result fields.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, Json

from .errors import InputError
from .pipeline import PHASE2
from .process_subband import STEP_NAMES, load_unit, run_step


class Options(BaseModel):
    step: Literal[STEP_NAMES] = Field(description="the Phase 2 step to run (pipeline.PHASE2)")
    unit_file: str = Field(description="the unit's parameters, as the preflight step recorded them")
    results: Json[dict[str, dict]] = Field(
        "{}", validate_default=True,
        description="JSON object: earlier step -> its result, for the steps this step's inputs name")


def run(options: Options) -> BaseModel:
    step = PHASE2[STEP_NAMES.index(options.step)]
    params = load_unit(options.unit_file)
    if not step.enabled(params):
        raise InputError(f"step {step.name} is switched off for this unit ({options.unit_file})")
    missing = [p for p in step.producers if p not in options.results]
    if missing:
        raise InputError(f"step {step.name} needs the results of {', '.join(missing)}")
    return run_step(step, params, dict(options.results))[1]

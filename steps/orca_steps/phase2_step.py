"""Step ``phase2-step``: one step of Phase 2 in its own pod (Argo template ``subband-process``).

Reads the unit's parameters that preflight recorded, takes the result fields of earlier steps that its
inputs name (Argo passes them, each an output parameter of its step), and runs the step exactly as the
one-process ``process-subband`` does (``process_subband.run_step``: same options, same resume markers).
Its result is the step's own result; ``json_outputs`` also writes each field as JSON, the form the
``results`` argument of later steps embeds. Only the fields a later step reads travel through Argo: a
whole result (the concat's list of every input MS) in every step's arguments would bloat the workflow.
"""
from __future__ import annotations

import json
from pathlib import Path
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
        description="JSON object: earlier step -> the fields of its result that this step's inputs name")
    json_outputs: str | None = Field(None, description="also write each result field as JSON to <dir>/<field>")


def run(options: Options) -> BaseModel:
    step = PHASE2[STEP_NAMES.index(options.step)]
    params = load_unit(options.unit_file)
    if not step.enabled(params):
        raise InputError(f"step {step.name} is switched off for this unit ({options.unit_file})")
    missing = [p for p in step.producers if p not in options.results]
    if missing:
        raise InputError(f"step {step.name} needs the results of {', '.join(missing)}")
    result = run_step(step, params, dict(options.results))[1]
    if options.json_outputs:
        folder = Path(options.json_outputs)
        folder.mkdir(parents=True, exist_ok=True)
        for name, value in result.model_dump(mode="json").items():
            (folder / name).write_text(json.dumps(value))
    return result

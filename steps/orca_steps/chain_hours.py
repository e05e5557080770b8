"""Step ``chain-hours``: the hours of one subband's chain, read from the file ``discover`` wrote.

The chain's hours stay out of the ``chains`` loop items: Argo puts every field of a loop item into the
node's name, and a night of 24 hours per subband made each name about 3 KB (over 1 MiB of names in the
workflow's status). Each chain reads its own list here instead.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from .errors import InputError


class Options(BaseModel):
    hours_file: str = Field(description="the chain's hours (JSON list of {subband, lst_label, obs_date, ms_list_file})")


class Result(BaseModel):
    hours: list[dict] = Field(description="the chain's hours, in order")


def run(options: Options) -> Result:
    path = Path(options.hours_file)
    try:
        hours = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: cannot read the chain's hours: {exc}") from None
    if not isinstance(hours, list) or not all(isinstance(h, dict) and "lst_label" in h for h in hours):
        raise InputError(f"{path}: expected a JSON list of hours with lst_label")
    return Result(hours=hours)

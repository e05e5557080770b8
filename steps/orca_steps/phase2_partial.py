"""Step ``phase2-partial``: Argo's Phase 2 failure hook writes orca's best-effort partial archive.

Runs after Phase 2's steps ended other than Succeeded; what ran and what failed are read from the work
dir, as the one-process ``process-subband`` does (``process_subband.write_partial``). When preflight
failed, nothing was done and nothing is archived.
"""
from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from .labels import WriteRoot
from .logs import get_logger, log
from .process_subband import UNIT_FILE, load_unit, write_partial

_logger = get_logger("phase2-partial")


class Options(BaseModel):
    work_dir: WriteRoot = Field(description="NVMe work dir of the subband-hour")


class Result(BaseModel):
    archive_path: str = Field(description="the partial archive; empty when there was nothing to archive")


def run(options: Options) -> Result:
    unit_file = Path(options.work_dir) / UNIT_FILE
    if not unit_file.is_file():
        log(_logger, "preflight did not pass: nothing to archive", work_dir=options.work_dir)
        return Result(archive_path="")
    path = write_partial(load_unit(unit_file))
    return Result(archive_path=str(path or ""))

"""Step ``stage-refs``: copy reference files (cal tables, models, strategy) into ``<work_dir>/refs/`` once.

Up to ~45 Phase 1 pods of one work dir start together and all want the same references. They take an
exclusive ``fcntl`` lock on ``refs/.stage.lock``; under it, each missing reference is copied to a
temporary name and renamed into place, so a reference that exists is always complete. A pod that
finds every reference already there returns without taking the lock.
"""
from __future__ import annotations

import fcntl
import shutil
from pathlib import Path

from pydantic import BaseModel, Field

from .errors import InputError
from .fileio import atomic_path, remove_stale_temps
from .labels import WriteRoot
from .logs import get_logger, log, step_timer

_logger = get_logger("stage-refs")
LOCK_NAME = ".stage.lock"


class Options(BaseModel):
    nvme_work_dir: WriteRoot = Field(description="work dir of the unit; references go to <nvme_work_dir>/refs/")
    refs: list[str] = Field(description="reference files or table directories to stage")


class Result(BaseModel):
    refs_dir: str
    staged: list[str] = Field(description="path in refs/ of every reference, in the order given")
    copied: list[str] = Field(description="those this call copied (the others were already staged)")


def _check_sources(refs: list[str]) -> list[Path]:
    sources = [Path(r) for r in refs]
    for src in sources:
        if not src.exists():
            raise InputError(f"{src}: reference file does not exist")
    names = [s.name for s in sources]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InputError(f"references share the file name {', '.join(dupes)}: they would overwrite each other in refs/")
    return sources


def _copy_atomic(src: Path, dest: Path) -> None:
    with atomic_path(dest) as tmp:
        if src.is_dir():
            shutil.copytree(src, tmp, symlinks=False)
        else:
            shutil.copy2(src, tmp)


def stage_refs(nvme_work_dir: str | Path, refs: list[str]) -> Result:
    """Make ``<nvme_work_dir>/refs/<name>`` exist for every reference; safe when many pods race."""
    sources = _check_sources(refs)
    refs_dir = Path(nvme_work_dir) / "refs"
    dests = [refs_dir / s.name for s in sources]
    copied: list[str] = []
    if not all(d.exists() for d in dests):
        refs_dir.mkdir(parents=True, exist_ok=True)
        with open(refs_dir / LOCK_NAME, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                for src, dest in zip(sources, dests):
                    remove_stale_temps(dest)  # a pod killed mid-copy; only ever under the lock
                    if dest.exists():
                        continue
                    _copy_atomic(src, dest)
                    copied.append(str(dest))
                    log(_logger, "staged reference", src=str(src), dest=str(dest))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    return Result(refs_dir=str(refs_dir), staged=[str(d) for d in dests], copied=copied)


def run(options: Options) -> Result:
    with step_timer("stage-refs", options.nvme_work_dir):
        return stage_refs(options.nvme_work_dir, options.refs)

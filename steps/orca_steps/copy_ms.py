"""Step ``copy``: bring one ``.ms`` or ``.ms.tar`` from Lustre into the NVMe work dir.

The source is only read. The copy (or the untarred MS) is built under a temporary name in the work
dir and renamed into place once it opens as an MS, so ``<work_dir>/<name>.ms`` existing means a
complete copy: a rerun reuses it, and a copy cut short is replaced. When both ``x.ms`` and
``x.ms.tar`` exist the tar is used, as in orca. A link inside the MS is copied as a link when it stays
inside, and refused when it leads out (tar members are held to the same rule by tarfile's data filter).
"""
from __future__ import annotations

import os
import shutil
import tarfile
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

from .errors import InputError
from .labels import WriteRoot
from .logs import get_logger, log, step_timer
from .msio import check_ms, open_ms

_logger = get_logger("copy")
PARTIAL_MARK = ".partial-"


class Options(BaseModel):
    src_ms: str = Field(description="source MS on Lustre: x.ms or x.ms.tar (the tar is preferred when both exist)")
    nvme_work_dir: WriteRoot = Field(description="work dir on NVMe; the MS lands at <nvme_work_dir>/x.ms")


class Result(BaseModel):
    ms_path: str
    source: str = Field(description="the file actually read (x.ms or x.ms.tar)")
    reused: bool = Field(description="True if a complete earlier copy was kept")
    bytes: int


def nvme_name(src_ms: str | Path) -> str:
    """The name a source MS gets on NVMe (x.ms.tar -> x.ms)."""
    return Path(src_ms).name.removesuffix(".tar")


COMPRESSED_TAR_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".tar.zst")


def compressed_tar_problem(name: str) -> str | None:
    """Why a compressed tar is not an input (None if ``name`` is not one)."""
    if name.endswith(COMPRESSED_TAR_SUFFIXES):
        return "a compressed tar: inputs are x.ms or an uncompressed x.ms.tar (untar it, or tar without -z)"
    return None


def resolve_source(src_ms: str | Path) -> tuple[Path, str]:
    """(path to read, MS directory name). Prefers ``x.ms.tar`` over ``x.ms``."""
    src = Path(src_ms)
    problem = compressed_tar_problem(src.name)
    if problem:
        raise InputError(f"{src}: {problem}")
    if src.name.endswith(".ms.tar"):
        tar, ms = src, src.with_name(src.name[: -len(".tar")])
    else:
        ms, tar = src, src.with_name(src.name + ".tar")
    if tar.is_file():
        return tar, ms.name
    if ms.exists():
        return ms, ms.name
    raise InputError(f"{src}: Measurement Set does not exist (neither {ms.name} nor {tar.name})")


def check_links(ms: Path) -> None:
    """Refuse an MS holding a link that leads out of it (an outside file copied in, /dev/zero filling the
    disk) or a special file; links that stay inside are copied as links."""
    root = ms.resolve()
    for path in [ms, *ms.rglob("*")]:
        if path.is_symlink():
            target = path.resolve()
            if not target.is_relative_to(root):
                raise InputError(f"{ms}: {path.relative_to(ms)} is a link out of the MS (to {target}); refused")
        elif not (path.is_dir() or path.is_file()):
            raise InputError(f"{ms}: {path.relative_to(ms)} is not a regular file or folder; refused")


def _tree_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _untar(tar_path: Path, name: str, into: Path) -> Path:
    """Extract the MS directory ``name`` from ``tar_path`` under ``into``; errors name the tar."""
    try:
        with tarfile.open(tar_path, "r:*") as tar:
            members = tar.getmembers()
            tops = {m.name.split("/", 1)[0] for m in members}
            if tops != {name}:
                raise InputError(f"{tar_path}: tar does not hold exactly the MS directory {name} (found {sorted(tops)[:5]})")
            tar.extractall(into, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{tar_path}: tar is truncated or unreadable: {exc}") from exc
    return into / name


def copy_ms(src_ms: str | Path, nvme_work_dir: str | Path) -> Result:
    """Copy or untar ``src_ms`` to ``<nvme_work_dir>/<name>.ms``; reuse a complete earlier copy."""
    source, name = resolve_source(src_ms)
    work = Path(nvme_work_dir)
    dest = work / name
    if dest.exists():
        check_ms(dest)
        log(_logger, "reusing complete copy", ms=str(dest))
        return Result(ms_path=str(dest), source=str(source), reused=True, bytes=_tree_bytes(dest))
    if source.is_dir():
        check_ms(source)
        check_links(source)
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.glob(f".{name}{PARTIAL_MARK}*"):
        shutil.rmtree(stale)  # left by a pod that died mid-copy
    staging = work / f".{name}{PARTIAL_MARK}{uuid.uuid4().hex[:8]}"
    try:
        if source.is_dir():
            shutil.copytree(source, staging / name, symlinks=True)
        else:
            _untar(source, name, staging)
        try:
            with open_ms(staging / name) as tab:
                tab.nrows()
        except InputError as exc:
            raise InputError(f"{source}: copy does not open as a Measurement Set: {exc}") from exc
        os.rename(staging / name, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    size = _tree_bytes(dest)
    log(_logger, "copied MS", src=str(source), ms=str(dest), bytes=size)
    return Result(ms_path=str(dest), source=str(source), reused=False, bytes=size)


def run(options: Options) -> Result:
    with step_timer("copy", options.nvme_work_dir):
        return copy_ms(options.src_ms, options.nvme_work_dir)

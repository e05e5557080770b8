"""Step ``archive``: copy a unit's products to ``<archive_root>/<lst>/<date>/<run_label>/<sb>/``, then clean up.

The copy goes to a hidden sibling (``.<sb>.partial-<pid>``), every file hashed (SHA-256) as it is
written and read back to check; only a complete, verified copy is renamed into place, so a run killed
mid-archive leaves no partial destination (the next run removes the stale sibling). The archive holds
``MANIFEST.sha256``. An existing archive is never replaced unless ``overwrite``; one identical to this
run's products counts as done (a resumed run that died after the rename). orca replaced any existing
destination. A partial archive (``partial_archive``, after a failed Phase 2) holds ``PARTIAL.json`` and
says so in its manifest; it never replaces a complete archive, and a complete archive replaces it.

Products are everything in the work dir except Measurement Sets (but the concat MS with
``archive_concat_ms``), ``refs/`` and hidden entries (done-markers, WSClean's temporary files). Clean-up afterwards: by default the concat MS and the Phase 1
MS copies inside the work dir are deleted (orca deleted the latter right after concat; we keep them
until the archive is safe); ``skip_cleanup`` keeps them; ``cleanup_nvme`` deletes the whole work dir.
Nothing outside the work dir is ever deleted, and sources are only read.
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from pydantic import BaseModel, Field, field_validator

from . import config
from .errors import ArchiveExistsError, InputError, OrcaError
from .labels import LstLabel, ObsDate, RunLabel, Subband, WriteRoot
from .logs import get_logger, log, step_timer
from .products import PARTIAL_MARKER

_logger = get_logger("archive")
MANIFEST = "MANIFEST.sha256"
EXCLUDED_DIRS = ("refs",)
COPY_CHUNK = 8 * 2**20


class Options(BaseModel):
    work_dir: WriteRoot = Field(description="NVMe work dir of the unit (its products are archived)")
    subband: Subband = Field(description="subband label, e.g. 73MHz")
    lst_label: LstLabel = Field(description="LST hour, e.g. 14h")
    obs_date: ObsDate = Field(description="observation date YYYY-MM-DD")
    run_label: RunLabel = Field(description="pipeline run label")
    archive_root: WriteRoot | None = Field(None, description="archive root (default: the site's archive_root)")
    overwrite: bool = Field(False, description="replace an existing, different archive of this unit")
    ms: str | None = Field(None, description="the concat MS to delete after archiving (default: <work_dir>/<sb>_concat.ms)")
    ms_paths: list[str] = Field(default_factory=list, description="Phase 1 MS copies; deleted with the concat if inside the work dir")
    skip_cleanup: bool = Field(False, description="keep the MS on NVMe")
    cleanup_nvme: bool = Field(False, description="delete the whole work dir after archiving")
    archive_concat_ms: bool = Field(False, description="archive the concat MS (inside the work dir) as well")

    @field_validator("archive_root", "ms", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == "" else value


class Result(BaseModel):
    archive_path: str
    files: int
    bytes: int
    reused: bool = Field(description="an identical archive already existed; nothing was replaced")
    deleted: list[str] = Field(description="what clean-up removed from NVMe")


def product_files(work_dir: Path, keep_ms: tuple[Path, ...] = ()) -> list[Path]:
    """Relative paths of the unit's products (see module docstring for what is left out); Measurement
    Sets named in ``keep_ms`` (relative to the work dir: orca's ``archive_concat_ms``) are products too."""
    files = []
    for root, dirs, names in os.walk(work_dir):
        rel_root = Path(root).relative_to(work_dir)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and (not d.endswith(".ms") or rel_root / d in keep_ms)
                         and not (rel_root == Path(".") and d in EXCLUDED_DIRS))
        files += [rel_root / n for n in sorted(names) if not n.startswith(".") and not n.endswith(".ms.tar")]
    return files


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(COPY_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def copy_file(src: Path, dest: Path) -> str:
    """Copy ``src`` to ``dest`` (bytes, then mode and times); returns the SHA-256 of what was read."""
    digest = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(COPY_CHUNK):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    shutil.copystat(src, dest)
    return digest.hexdigest()


def _read_manifest(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    entries = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):  # a note, e.g. the partial-archive header
            continue
        digest, _, name = line.partition("  ")
        entries[name] = digest
    return entries


def remove_stale_partials(dest: str | Path) -> list[str]:
    """Remove the hidden partial copies (``.<sb>.partial-<pid>``) a killed archive left beside ``dest``."""
    dest = Path(dest)
    removed = []
    for stale in dest.parent.glob(f".{dest.name}.partial-*"):
        shutil.rmtree(stale, ignore_errors=True)
        log(_logger, "removed a partial archive left by an interrupted run", level=30, path=str(stale))
        removed.append(str(stale))
    return removed


def check_destination(work_dir: str | Path, dest: str | Path, overwrite: bool) -> None:
    """Refuse, before any work, a unit whose archive would be refused at the end: ``dest`` exists, differs
    (its files' names and sizes are not the work dir's products) and ``overwrite`` is off."""
    work_dir, dest = Path(work_dir), Path(dest)
    if overwrite or not dest.exists():
        return
    ours = {str(rel): (work_dir / rel).stat().st_size for rel in product_files(work_dir)} if work_dir.is_dir() else {}
    theirs = {str(rel): (dest / rel).stat().st_size for rel in product_files(dest) if str(rel) != MANIFEST}
    if ours and ours == theirs:
        return  # a run that died after its archive's rename: the archive step will find it identical
    raise ArchiveExistsError(f"{dest}: an archive of this unit already exists; pass overwrite=true to replace it "
                             "or use another run_label (refused before Phase 2 starts)")


def is_partial(archive: Path) -> bool:
    """An archive made after a failure (orca's best-effort partial archive) holds the partial marker."""
    return (Path(archive) / PARTIAL_MARKER).is_file()


def archive_products(work_dir: str | Path, dest: str | Path, overwrite: bool = False,
                     keep_ms: tuple[Path, ...] = (), partial: str | None = None) -> tuple[Path, int, int, bool]:
    """Copy the products of ``work_dir`` to ``dest`` atomically. Returns (dest, files, bytes, reused).

    ``partial`` (why the unit failed) makes a partial archive: the manifest's first line says so, and it
    never replaces a complete archive; a complete archive always replaces a partial one.
    """
    work_dir, dest = Path(work_dir).resolve(), Path(dest)
    if not work_dir.is_dir():
        raise InputError(f"{work_dir}: work dir does not exist")
    if dest.resolve().is_relative_to(work_dir) or work_dir.is_relative_to(dest.resolve()):
        raise InputError(f"archive {dest} and work dir {work_dir} overlap")
    files = product_files(work_dir, keep_ms)
    if not files:
        raise InputError(f"{work_dir}: no products to archive")
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(dest)
    tmp = dest.parent / f".{dest.name}.partial-{os.getpid()}"
    manifest, total = {}, 0
    try:
        for rel in files:
            src, out = work_dir / rel, tmp / rel
            manifest[str(rel)] = copy_file(src, out)
            size = src.stat().st_size
            if out.stat().st_size != size or _sha256(out) != manifest[str(rel)]:
                raise OrcaError(f"{out}: copy does not match {src}")
            total += size
        note = f"# PARTIAL archive: {' '.join(partial.split())}\n" if partial else ""
        (tmp / MANIFEST).write_text(note + "".join(f"{d}  {n}\n" for n, d in sorted(manifest.items())))
        if dest.exists():
            if partial and not is_partial(dest):
                raise ArchiveExistsError(f"{dest}: a complete archive of this unit exists; no partial one replaces it")
            if _read_manifest(dest / MANIFEST) == manifest:
                shutil.rmtree(tmp)
                log(_logger, "identical archive already in place", archive=str(dest))
                return dest, len(files), total, True
            if not overwrite and not is_partial(dest):
                raise ArchiveExistsError(f"{dest}: an archive of this unit already exists and differs; "
                                         "pass overwrite=true to replace it")
            old = dest.parent / f".{dest.name}.replaced-{os.getpid()}"
            dest.rename(old)
            tmp.rename(dest)
            shutil.rmtree(old)
        else:
            tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log(_logger, "archived", archive=str(dest), files=len(files), bytes=total)
    return dest, len(files), total, False


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


def clean_up(work_dir: str | Path, ms: str | Path | None, ms_paths: list[str], skip_cleanup: bool,
             cleanup_nvme: bool) -> list[str]:
    """Delete the concat MS and the Phase 1 copies (or the whole work dir); only inside ``work_dir``."""
    work_dir = Path(work_dir)
    if cleanup_nvme:
        shutil.rmtree(work_dir)
        return [str(work_dir)]
    if skip_cleanup:
        return []
    deleted = []
    for path in ([Path(ms)] if ms else []) + [Path(p) for p in ms_paths]:
        if not _inside(path, work_dir):
            log(_logger, "not deleting an MS outside the work dir", ms=str(path))
            continue
        if path.is_dir():
            shutil.rmtree(path)
            deleted.append(str(path))
    return deleted


def run(options: Options) -> Result:
    root = options.archive_root or config.site().archive_root
    dest = config.archive_dir(root, options.lst_label, options.obs_date, options.run_label,
                              config.check_subband(options.subband))
    ms = options.ms or str(Path(options.work_dir) / f"{options.subband}_concat.ms")
    # Timed in the log only: a line appended to the work dir's timings.jsonl would make it differ from
    # the copy just archived, and a resumed run could no longer recognise its own archive.
    keep_ms = ()
    if options.archive_concat_ms:
        if not Path(ms).is_dir() or not _inside(Path(ms), Path(options.work_dir)):
            raise InputError(f"{ms}: archive_concat_ms needs the concat MS inside the work dir")
        keep_ms = (Path(ms).resolve().relative_to(Path(options.work_dir).resolve()),)
    with step_timer("archive", None, archive=dest):
        path, files, total, reused = archive_products(options.work_dir, dest, options.overwrite, keep_ms)
    deleted = clean_up(options.work_dir, ms, options.ms_paths, options.skip_cleanup, options.cleanup_nvme)
    return Result(archive_path=str(path), files=files, bytes=total, reused=reused, deleted=deleted)


def partial_archive(work_dir: str | Path, dest: str | Path, reason: str) -> Path | None:
    """orca's best-effort archive after a failure: what exists, marked partial; None if not possible.

    The work dir is left as it is (a resumed run continues from it); nothing is deleted.
    """
    try:
        path, files, _, _ = archive_products(work_dir, dest, overwrite=False, partial=reason)
    except (OrcaError, OSError) as exc:
        log(_logger, "no partial archive", archive=str(dest), reason=str(exc))
        return None
    log(_logger, "partial archive written", archive=str(path), files=files)
    return path

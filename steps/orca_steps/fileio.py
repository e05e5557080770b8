"""Writing files so that a reader never sees half of one: every product, marker and table is built under
a hidden temporary name beside its final name, then renamed over it (a rename in one directory is
atomic). A writer that raises, or a pod killed mid-write, leaves at most a ``.<name>.<pid>-<random>.tmp``
that ``remove_stale_temps`` clears and that no product glob matches. Also the one CSV writer.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

TMP_SUFFIX = ".tmp"


def temp_path(path: str | Path) -> Path:
    """``<dir>/.<name>.<pid>-<random>.tmp``: same directory (so the rename is atomic), one per writer
    (pods in separate containers often share a pid, and their work dirs share storage)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}{TMP_SUFFIX}")


def remove_stale_temps(path: str | Path) -> None:
    """Remove temporaries of ``path`` left by writers that died (any pid)."""
    path = Path(path)
    for stale in path.parent.glob(f".{path.name}.*{TMP_SUFFIX}"):
        _remove(stale)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path for a writer to fill (a file or a directory); on success it replaces
    ``path`` (a directory already there is swapped out and removed), on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        if tmp.is_dir() and path.exists():  # os.replace cannot replace a non-empty directory
            aside = temp_path(path)
            os.replace(path, aside)
            os.replace(tmp, path)
            _remove(aside)
        else:
            os.replace(tmp, path)
    finally:
        _remove(tmp)


def write_atomic(path: str | Path, content: str | bytes) -> Path:
    """Write text or bytes to ``path`` atomically; returns ``path``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            tmp.write_text(content)
    return path


def write_json(path: str | Path, data) -> Path:
    """JSON (indent 1, newline-terminated; datetimes and paths as strings), written atomically."""
    return write_atomic(path, json.dumps(data, indent=1, default=str) + "\n")


def write_csv(path: str | Path, rows: Iterable[dict], columns: list[str]) -> Path:
    """A header of ``columns`` and one line per row (missing keys empty), written atomically."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return path

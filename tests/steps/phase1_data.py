"""Helpers shared by the Phase 1 step tests: simulated inputs and a content hash of a tree."""
from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path

import numpy as np
from casacore import tables

from orca_steps.sim import simulate_ms


def tree_hash(path: str | Path) -> str:
    """SHA-256 over every file's relative path and bytes (a file, or a directory tree)."""
    path = Path(path)
    digest = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        digest.update(str(f.relative_to(path.parent)).encode())
        digest.update(f.read_bytes())
    return digest.hexdigest()


def make_source(root: Path, name: str = "20250615_041823_73MHz_averaged.ms", **overrides) -> tuple[Path, dict]:
    """Simulate one MS under ``root/lustre`` with its cal tables in ``root/lustre/refs``."""
    lustre = root / "lustre"
    entry, _, _ = simulate_ms(lustre / name, refs_dir=lustre / "refs", **overrides)
    return lustre / name, entry


def tar_copy(ms: Path, tar_path: Path | None = None) -> Path:
    """``x.ms.tar`` holding a copy of ``ms`` (the MS stays)."""
    tar_path = tar_path or ms.with_name(ms.name + ".tar")
    with tarfile.open(tar_path, "w") as tar:
        tar.add(ms, arcname=ms.name)
    return tar_path


def columns(ms: Path, *names: str) -> list[np.ndarray]:
    with tables.table(str(ms), ack=False) as tab:
        return [tab.getcol(n) for n in names]


def copy_tree(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest

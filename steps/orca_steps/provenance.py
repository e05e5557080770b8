"""Step ``provenance``: ``<work_dir>/provenance.json``: what made this unit's products, where, and how long.

Versions (orca-argo, Python, numpy, python-casacore, astropy and the external tools as they report
themselves), every parameter of the unit, its inputs (path and size), the node (``NODE_NAME`` as set
from the pod spec, and the hostname), the result of every step that has finished (from the done-markers
of process-subband) and every step timing (``timings.jsonl``, written by ``logs.step_timer``).
"""
from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from pydantic import BaseModel

from .fileio import write_json
from .logs import step_timer
from .products import PROVENANCE, TIMINGS
from .pipeline import UnitParameters
from .tools import tool_env

PYTHON_PACKAGES = ("orca-argo", "numpy", "python-casacore", "astropy", "scipy", "h5py", "pydantic")
TOOLS = {"wsclean": ["--version"], "aoflagger": ["--version"], "fpack": ["-V"]}
DONE_DIR = ".done"


class Options(UnitParameters):
    """The unit's parameters, recorded as given."""


class Result(BaseModel):
    provenance: str


def package_versions() -> dict[str, str | None]:
    versions = {"python": platform.python_version()}
    for name in PYTHON_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def tool_versions() -> dict[str, str | None]:
    """First line each tool prints about its version, or None if it is not installed."""
    found = {}
    for tool, args in TOOLS.items():
        try:
            out = subprocess.run([tool, *args], env=tool_env(), capture_output=True, text=True, timeout=60)
        except (FileNotFoundError, subprocess.TimeoutExpired):
            found[tool] = None
            continue
        lines = [ln.strip() for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
        found[tool] = lines[0] if lines else None
    return found


def _inputs(ms_paths: list[str]) -> list[dict]:
    entries = []
    for path in map(Path, ms_paths):
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else None
        entries.append({"path": str(path), "exists": path.exists(), "bytes": size})
    return entries


def _jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def step_records(work_dir: Path) -> dict[str, dict]:
    """Step name -> {options, result, finished} from process-subband's done-markers."""
    folder = work_dir / DONE_DIR
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))} if folder.is_dir() else {}


def write_provenance(params: UnitParameters) -> Path:
    work_dir = Path(params.work_dir)
    record = {
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": {**package_versions(), **tool_versions()},
        "parameters": params.model_dump(mode="json"),
        "inputs": _inputs(params.ms_paths),
        "node": {"node_name": os.environ.get("NODE_NAME"), "hostname": socket.gethostname()},
        "steps": step_records(work_dir),
        "timings": _jsonl(work_dir / TIMINGS),
    }
    return write_json(work_dir / PROVENANCE, record)


def run(options: Options) -> Result:
    with step_timer("provenance", options.work_dir):
        path = write_provenance(UnitParameters(**options.model_dump()))
    return Result(provenance=str(path))

"""CASA itself, run in its own venv (``make casa``) as the reference for the steps that re-create it.

Missing CASA is a failure, not a skip: CI must prove the comparison ran.
"""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).parent
CASA_PYTHON = HERE.parents[1] / ".venv-casa" / "bin" / "python"
SITE_CONFIG = HERE / "casasiteconfig.py"
RUNNER = HERE / "casa_tasks.py"


def run_casa(workdir: Path, *tasks: tuple[str, dict]) -> None:
    """Run casatasks ``tasks`` ((name, kwargs), in order) in the CASA venv, offline, with ``workdir`` as cwd."""
    if not CASA_PYTHON.exists():
        pytest.fail(f"CASA reference venv {CASA_PYTHON.parent.parent} is missing: run `make casa`")
    env = {**os.environ, "CASASITECONFIG": str(SITE_CONFIG)}
    env.pop("PYTHONPATH", None)
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([str(CASA_PYTHON), str(RUNNER), json.dumps(tasks)], cwd=workdir, env=env,
                          capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"CASA {[name for name, _ in tasks]} failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")

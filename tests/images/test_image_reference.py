"""The chart deploys the image that `make images` builds, and the Dockerfile gives it what the pods need.

Reads charts/orca-pipeline/values.yaml, pyproject.toml, the Makefile (through `make image-name`) and
images/Dockerfile; building and running the image is `make images images-smoke` (CI).
"""
from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import yaml

from orca_steps.tools import TOOL_PACKAGES

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "charts" / "orca-pipeline" / "values.yaml"
DOCKERFILE = ROOT / "images" / "Dockerfile"


def chart_values() -> dict:
    assert VALUES.is_file(), f"{VALUES} is missing: the chart must name the step image"
    return yaml.safe_load(VALUES.read_text())


def package_version() -> str:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


def dockerfile_stages(text: str) -> list[list[tuple[str, str]]]:
    """Instructions (keyword, arguments) per build stage, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    stages: list[list[tuple[str, str]]] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, args = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword.upper(), args.strip()))
    return stages


def runtime_stage() -> list[tuple[str, str]]:
    return dockerfile_stages(DOCKERFILE.read_text())[-1]


def test_makefile_builds_the_image_the_chart_deploys():
    values = chart_values()["image"]
    built = subprocess.run(["make", "-s", "--no-print-directory", "image-name"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.strip()
    assert built == f"{values['repository']}:{values['tag']}"
    assert values["repository"] == "ghcr.io/ovro-lwa/orca-steps"


def test_image_tag_is_the_package_version():
    assert str(chart_values()["image"]["tag"]) == package_version()


def test_image_runs_as_the_chart_user():
    security = chart_values()["securityContext"]
    users = [args for keyword, args in runtime_stage() if keyword == "USER"]
    assert users, "the runtime stage of images/Dockerfile sets no USER"
    assert users[-1] == f"{security['runAsUser']}:{security['runAsGroup']}"
    assert security["runAsUser"] != 0


def test_runtime_stage_installs_every_tool_the_steps_call():
    installs = " ".join(args for keyword, args in runtime_stage()
                        if keyword == "RUN" and "apt-get install" in args)
    packages = set(installs.split())
    missing = sorted(set(TOOL_PACKAGES.values()) - packages)
    assert not missing, f"images/Dockerfile does not install {missing} (orca_steps.tools.TOOL_PACKAGES)"


def test_image_installs_the_steps_extra_and_wires_casacore_measures():
    text = DOCKERFILE.read_text()
    assert "['optional-dependencies']['steps']" in text and '"/src[steps]"' in text
    env = " ".join(args for keyword, args in runtime_stage() if keyword == "ENV")
    assert "CASARCFILES=/opt/orca/casarc" in env
    assert "TMPDIR=/tmp" in env and "HOME=/tmp" in env and "MPLCONFIGDIR=/tmp/" in env


def test_dockerfile_parser_sees_both_stages():
    stages = dockerfile_stages(DOCKERFILE.read_text())
    assert len(stages) == 2
    assert stages[0][0] == ("FROM", "${BASE_IMAGE} AS builder")
    assert stages[1][0] == ("FROM", "${BASE_IMAGE}")
    assert not any("build-essential" in args or "gcc" in args for _, args in stages[1])

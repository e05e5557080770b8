"""setup/system-packages.sh: install only what is missing, never what the machine has from elsewhere."""
import os
import shutil
import subprocess
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "setup" / "system-packages.sh"
TABLE = ROOT / "steps" / "orca_steps" / "system_tools.tsv"


def run(*args, path=None):
    env = dict(os.environ)
    if path:
        env["PATH"] = f"{path}:{env['PATH']}"
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, env=env)


def table_packages(group):
    rows = [line.split("\t") for line in TABLE.read_text().splitlines() if line and not line.startswith("#")]
    return {row[0]: row[1] for row in rows if row[2] == group}


def fake_tools(tmp_path, names):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in names:
        tool = bin_dir / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    return bin_dir


def test_a_tool_the_machine_has_from_elsewhere_is_never_installed(tmp_path):
    """A tool on PATH that no listed Debian package provides is kept, on this machine and on a fresh one."""
    step_tools = table_packages("step")
    bin_dir = fake_tools(tmp_path, step_tools)
    for mode in ([], ["--fresh"]):
        out = run("list", "--group", "step", *mode, path=bin_dir)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == "", f"list {mode} wants {out.stdout!r} although every tool is on PATH"


def test_fresh_counts_tools_of_listed_packages_as_missing():
    """--fresh lists every step tool whose file comes from the listed package (or that is absent)."""
    out = run("list", "--group", "step", "--fresh")
    assert out.returncode == 0, out.stderr
    wanted = set(out.stdout.split())
    for tool, package in table_packages("step").items():
        found = shutil.which(tool)
        owner = subprocess.run(["dpkg", "-S", os.path.realpath(found)], capture_output=True, text=True).stdout if found else ""
        if not found or owner.startswith(f"{package}:"):
            assert package in wanted, f"{tool} ({package}) missing from the fresh list {wanted}"


def test_nodesource_npm_is_kept():
    """NodeSource's nodejs ships npm; installing Debian's npm beside it is the conflict this fixes.
    Without any npm on the machine, Debian's is what set-up installs."""
    npm = shutil.which("npm")
    owner = subprocess.run(["dpkg", "-S", os.path.realpath(npm)], capture_output=True, text=True) if npm else None
    out = run("list", "--group", "dev", "--fresh")
    if owner is None or owner.stdout.startswith("npm:"):
        assert "npm" in out.stdout.split()
    else:
        assert "npm" not in out.stdout.split(), f"npm from {owner.stdout.strip() or 'outside dpkg'} would be replaced"


def test_dry_run_needs_fresh_and_unknown_options_fail():
    assert run("dry-run").returncode == 2
    assert run("list", "--bogus").returncode == 2

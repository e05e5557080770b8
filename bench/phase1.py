"""Benchmark of the Phase 1 steps on a full-size MS (not a test).

A full OVRO-LWA MS (352 antennas, 62,128 rows, 48 channels, 4 correlations, one integration) is
simulated once into a cache dir and reused. In the same run we time a plain ``shutil.copytree`` of
that MS, then ``copy``, ``flag-antennas`` and ``apply-calibration`` (on a fresh copy, and again on the
flagged copy, as Phase 1 runs it), each in a fresh child process so the peak memory (the child's
VmHWM) belongs to that step alone; casacore is imported before the clock starts. Each step runs
``--repeat`` times on a fresh copy; the best and the median are printed with their ratios to the plain
copy (the best is the steadier figure on a shared machine). One more run of each step, not timed,
gives the tracemalloc peak of Python/numpy allocations (tracing slows numpy by ~25 %).

apply-calibration saves its solutions beside the MS for the hour's other MS. "apply-calibration" is an
MS after the first of its hour (fresh MS copies in one folder: the first run of ``--repeat`` computes
the solutions, the others load them); "apply, first MS" is the first MS of an hour (a fresh folder each
run). Targets: apply-calibration <= 2x the plain copy, peak < 1 GB. bench/apply_floor.py shows how much
of apply-calibration's time any casacore-based correction must spend.

CASA applycal, called as orca calls it (``gaintable=[bp, xy], calwt=False, flagbackup=False``, default
interpolation), is timed on the same MS and tables with the CASA venv of ``make casa`` (or the
interpreter ``--casa-python`` names), offline (tests/reference/casasiteconfig.py); its CORRECTED_DATA and
FLAG are compared with ours. Target: CASA >= 8x slower than apply-calibration.

    .venv/bin/python bench/phase1.py [--cache out/bench-phase1] [--repeat 3] [--casa-python PY]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from measure import in_child, run_measured

N_ANTENNAS = 352
ROOT = Path(__file__).resolve().parents[1]
TARGET_APPLY_RATIO = 2.0
TARGET_PEAK_MB = 1024.0
TARGET_CASA_RATIO = 8.0
CASA_VENV_PYTHON = ROOT / ".venv-casa" / "bin" / "python"
CASA_SITE_CONFIG = ROOT / "tests" / "reference" / "casasiteconfig.py"


# --- the full-size input, built once --------------------------------------------------------------
def full_ms(cache: Path) -> tuple[Path, str, str]:
    """(MS, B table, Xf table) of the full-size simulation, simulated on first use."""
    marker = cache / "complete.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info.get("n_antennas") == N_ANTENNAS and Path(info["ms"]).is_dir():
            return Path(info["ms"]), info["bp_table"], info["xy_table"]
    from orca_steps.sim import simulate_ms

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(f"simulating the full-size MS into {cache} (once) ...", flush=True)
    start = time.time()
    entry, _, _ = simulate_ms(cache / "20250615_041823_73MHz_averaged.ms", refs_dir=cache / "refs",
                              n_antennas=N_ANTENNAS, n_integrations=1)
    info = {"n_antennas": N_ANTENNAS, "ms": entry["path"], "bp_table": entry["bp_table"],
            "xy_table": entry["xy_table"], "simulate_s": round(time.time() - start, 1)}
    marker.write_text(json.dumps(info, indent=1))
    return Path(info["ms"]), info["bp_table"], info["xy_table"]


# --- one measured step, in a child process --------------------------------------------------------

def _measure(step: str, args: dict, queue) -> None:
    """Time ``step`` or, with ``args["trace"]``, measure its tracemalloc peak (then its time is not kept)."""
    from casacore import tables  # noqa: F401 - imported before the clock starts, like in a warm pod

    from orca_steps.apply_calibration import apply_calibration
    from orca_steps.copy_ms import copy_ms
    from orca_steps.flag_antennas import flag_antennas

    functions = {
        "plain copytree": lambda: shutil.copytree(args["src"], args["dest"]),
        "copy": lambda: copy_ms(args["src"], args["work"]),
        "flag-antennas": lambda: flag_antennas(args["ms"]),
        "apply-calibration": lambda: apply_calibration(args["ms"], args["bp_table"], args["xy_table"]),
    }
    measured = run_measured(functions[step], args.get("trace", False))
    measured.pop("result")
    queue.put(measured)


def measure(step: str, **args) -> dict:
    return in_child(_measure, step, args)


# --- CASA applycal, for reference -----------------------------------------------------------------
CASA_SCRIPT = """
import json, sys, time
from casatasks import applycal
ms, bp, xy = sys.argv[1:4]
start = time.perf_counter()
applycal(vis=ms, gaintable=[bp, xy], calwt=False, flagbackup=False)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def casa_python(given: str | None) -> str | None:
    if given:
        return given
    return str(CASA_VENV_PYTHON) if CASA_VENV_PYTHON.exists() else None


def measure_casa(python: str, ms: Path, bp: str, xy: str) -> dict:
    env = {**os.environ, "CASASITECONFIG": str(CASA_SITE_CONFIG)}
    proc = subprocess.run([python, "-c", CASA_SCRIPT, str(ms), bp, xy], capture_output=True, text=True,
                          cwd=ms.parent, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"CASA applycal failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def casa_agreement(ours: Path, casa: Path) -> tuple[float, int]:
    """Largest |ours - CASA| / |CASA| over visibilities neither flags, and the number of differing flags."""
    import numpy as np
    from casacore import tables

    from orca_steps.msio import data_row_bytes, row_chunks

    worst, flag_differences = 0.0, 0
    with tables.table(str(ours), ack=False) as a, tables.table(str(casa), ack=False) as b:
        for start, n in row_chunks(a.nrows(), data_row_bytes(a)):
            x, y = a.getcol("CORRECTED_DATA", start, n), b.getcol("CORRECTED_DATA", start, n)
            fa, fb = a.getcol("FLAG", start, n), b.getcol("FLAG", start, n)
            flag_differences += int(np.count_nonzero(fa != fb))
            ok = ~(fa | fb) & (np.abs(y) > 0)
            if ok.any():
                worst = max(worst, float(np.max(np.abs(x[ok] - y[ok]) / np.abs(y[ok]))))
    return worst, flag_differences


# --- the run --------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(ROOT / "out" / "bench-phase1"), help="where the full MS is kept")
    parser.add_argument("--repeat", type=int, default=5, help="runs per step (best and median are reported)")
    parser.add_argument("--casa-python", help="a Python with casatasks, for the CASA applycal reference")
    args = parser.parse_args(argv)

    cache = Path(args.cache).resolve()
    src, bp_table, xy_table = full_ms(cache)
    scratch = cache / "scratch"
    runs: dict[str, list[dict]] = {}
    traced: dict[str, dict] = {}

    def fresh(name: str) -> Path:
        path = scratch / name
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

    def next_ms(name: str) -> Path:
        """A folder for a fresh MS that keeps the solutions saved by the folder's earlier MS."""
        path = scratch / name
        shutil.rmtree(path / src.name, ignore_errors=True)
        path.mkdir(parents=True, exist_ok=True)
        return path

    for name in ("work", "calib"):
        shutil.rmtree(scratch / name, ignore_errors=True)  # the first run computes the hour's solutions
    for k in range(args.repeat + 1):
        trace = k == args.repeat  # the last run: memory only

        def record(step: str, result: dict) -> None:
            if trace:
                traced[step] = result
            else:
                runs.setdefault(step, []).append(result)

        plain = fresh("plain")
        record("plain copytree", measure("plain copytree", src=str(src), dest=str(plain / src.name), trace=trace))
        work = next_ms("work")
        record("copy", measure("copy", src=str(src), work=str(work), trace=trace))
        ms = work / src.name
        record("flag-antennas", measure("flag-antennas", ms=str(ms), trace=trace))
        record("apply after flagging",  # Phase 1's order: its dead antennas already flagged
               measure("apply-calibration", ms=str(ms), bp_table=bp_table, xy_table=xy_table, trace=trace))
        for name, step in (("calib", "apply-calibration"), ("first", "apply, first MS")):
            folder = next_ms(name) if name == "calib" else fresh(name)
            shutil.copytree(src, folder / src.name)  # a fresh MS without CORRECTED_DATA each time
            record(step, measure("apply-calibration", ms=str(folder / src.name), bp_table=bp_table,
                                 xy_table=xy_table, trace=trace))

    python = casa_python(args.casa_python)
    casa_ms = None
    if python:
        casa_runs = []
        for k in range(args.repeat):
            casa_dir = fresh("casa")
            casa_ms = casa_dir / src.name
            shutil.copytree(src, casa_ms)
            casa_runs.append(measure_casa(python, casa_ms, bp_table, xy_table))
        runs["CASA applycal"] = casa_runs

    plain = runs["plain copytree"]
    best_plain = min(r["seconds"] for r in plain)
    median_plain = statistics.median(r["seconds"] for r in plain)
    size_mb = sum(f.stat().st_size for f in src.rglob("*") if f.is_file()) / 2**20
    print(f"\nPhase 1 benchmark: {src.name} ({N_ANTENNAS} antennas, {size_mb:.0f} MB), {args.repeat} runs per step;"
          f" load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'step':<20}{'best s':>8}{'x plain':>9}{'median s':>10}{'x plain':>9}{'cpu s':>8}"
          f"{'peak RSS MB':>13}{'numpy peak MB':>15}")
    for step, results in runs.items():
        best = min(r["seconds"] for r in results)
        median = statistics.median(r["seconds"] for r in results)
        cpu = min(r.get("cpu", float("nan")) for r in results)
        rss = max(r.get("rss_mb", float("nan")) for r in [*results, traced.get(step, {})])
        numpy_peak = traced.get(step, {}).get("traced_mb", float("nan"))
        print(f"{step:<20}{best:>8.3f}{best / best_plain:>9.2f}{median:>10.3f}{median / median_plain:>9.2f}"
              f"{cpu:>8.3f}{rss:>13.0f}{numpy_peak:>15.0f}")
    apply = runs["apply-calibration"]
    ratio = min(r["seconds"] for r in apply) / best_plain
    after_flagging = min(r["seconds"] for r in runs["apply after flagging"]) / best_plain
    first = min(r["seconds"] for r in runs["apply, first MS"]) / best_plain
    peak = max(r["rss_mb"] for step, rs in runs.items() if step != "CASA applycal" for r in [*rs, traced[step]])
    print(f"\ntarget apply-calibration <= {TARGET_APPLY_RATIO:.0f}x plain copy (best of {args.repeat}): {ratio:.2f}x "
          f"({'met' if ratio <= TARGET_APPLY_RATIO else 'NOT met'}); after flag-antennas: {after_flagging:.2f}x; "
          f"the first MS of an hour (solutions computed, not loaded): {first:.2f}x")
    print(f"target peak memory < {TARGET_PEAK_MB:.0f} MB: {peak:.0f} MB ({'met' if peak < TARGET_PEAK_MB else 'NOT met'})")
    if "CASA applycal" in runs:
        casa_s = min(r["seconds"] for r in runs["CASA applycal"])
        casa_ratio = casa_s / min(r["seconds"] for r in apply)
        print(f"target CASA applycal >= {TARGET_CASA_RATIO:.0f}x apply-calibration (best of {args.repeat}): "
              f"{casa_ratio:.1f}x ({'met' if casa_ratio >= TARGET_CASA_RATIO else 'NOT met'}); the first MS of an "
              f"hour: {casa_ratio * ratio / first:.1f}x")
        worst, flag_differences = casa_agreement(scratch / "calib" / src.name, casa_ms)
        print(f"against CASA applycal: largest relative difference of CORRECTED_DATA {worst:.2e}, "
              f"FLAG differs in {flag_differences} samples")
    else:
        print(f"CASA applycal: not timed ({CASA_VENV_PYTHON} missing: run `make casa`, or pass --casa-python)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

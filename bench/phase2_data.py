"""Benchmark of the Phase 2 data steps on full-size MS (not a test).

One full OVRO-LWA MS (352 antennas, 62,128 rows, 48 channels, 4 correlations) is simulated once into a
cache dir; ``--n-ms`` Phase-1-like copies of it (CORRECTED_DATA added, TIME shifted by one integration
each) are the inputs of one subband-hour slice. We time, each in a fresh child process (peak memory =
the child's VmHWM): reading every column of every input once (the floor for concat), then concat,
fix-field, rephase, hot-baselines and the snapshot-QA flagging of one integration, and print each as a
ratio to the read-once time. Targets: concat <= 3x read-once (it reads and writes every byte once); every step's peak memory < 1 GB.

    .venv/bin/python bench/phase2_data.py [--cache out/bench-phase2-data] [--n-ms 6]
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from measure import in_child, peak_rss_mb

N_ANTENNAS = 352
INTEGRATION_S = 10.031
TARGET_CONCAT_RATIO = 3.0  # one read and one write of every byte
TARGET_PEAK_MB = 1024.0


def inputs(cache: Path, n_ms: int) -> list[Path]:
    """``n_ms`` Phase-1-like copies of one full-size simulated MS, built once."""
    marker = cache / "inputs.json"
    if marker.is_file():
        paths = [Path(p) for p in json.loads(marker.read_text())]
        if len(paths) == n_ms and all(p.is_dir() for p in paths):
            return paths
    import numpy as np
    from casacore import tables

    from orca_steps.msio import ensure_column, row_chunks
    from orca_steps.sim import simulate_ms

    shutil.rmtree(cache, ignore_errors=True)
    cache.mkdir(parents=True)
    print(f"simulating one full-size MS into {cache} (once) ...", flush=True)
    template = cache / "template.ms"
    simulate_ms(template, n_antennas=N_ANTENNAS, n_integrations=1)
    paths = []
    for k in range(n_ms):
        path = shutil.copytree(template, cache / f"in_{k:03d}.ms")
        with tables.table(str(path), readonly=False, ack=False) as tab:
            ensure_column(tab, "CORRECTED_DATA")
            for start, n in row_chunks(tab.nrows(), 48 * 4 * 8):
                tab.putcol("CORRECTED_DATA", tab.getcol("DATA", start, n), start, n)
            for col in ("TIME", "TIME_CENTROID"):
                tab.putcol(col, tab.getcol(col) + k * INTEGRATION_S)
        paths.append(path)
    marker.write_text(json.dumps([str(p) for p in paths]))
    return paths


def _read_once(paths: list[str]) -> None:
    """Every defined column of every input, in row chunks into reused buffers (as concat reads)."""
    from casacore import tables

    from orca_steps.msread import read_chunks

    for path in paths:
        with tables.table(path, ack=False) as tab:
            columns = [c for c in tab.colnames() if tab.iscelldefined(c, 0)]
            for chunk in read_chunks(tab, columns):
                for column in columns:
                    chunk[column]


def _measure(step: str, args: dict, queue) -> None:
    from casacore import tables  # noqa: F401 - imported before the clock starts, like in a warm pod

    from orca_steps.concat import concatenate_ms
    from orca_steps.fix_field import fix_field
    from orca_steps.hot_baselines import find_hot_baselines
    from orca_steps.rephase import lst_phase_centre, rephase_ms
    from orca_steps.snapshot_qa import flag_times, ms_times

    ms = args["ms"]
    functions = {
        "read inputs once": lambda: _read_once(args["inputs"]),
        "concat": lambda: concatenate_ms(args["inputs"], ms),
        "fix-field": lambda: fix_field(ms),
        "rephase": lambda: rephase_ms(ms, *lst_phase_centre("14h")),
        "hot-baselines": lambda: find_hot_baselines(ms, Path(ms).parent / "QA"),
        "snapshot-qa flagging": lambda: flag_times(ms, ms_times(ms)[0][:1]),
    }
    start = time.perf_counter()
    functions[step]()
    queue.put((time.perf_counter() - start, peak_rss_mb()))


def measure(step: str, args: dict) -> tuple[float, float]:
    return in_child(_measure, step, args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="out/bench-phase2-data")
    parser.add_argument("--n-ms", type=int, default=6)
    opts = parser.parse_args()
    cache = Path(opts.cache).resolve()
    paths = inputs(cache, opts.n_ms)
    work = cache / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    args = {"inputs": [str(p) for p in paths], "ms": str(work / "73MHz_concat.ms")}
    size_gb = sum(f.stat().st_size for p in paths for f in p.rglob("*") if f.is_file()) / 1e9
    print(f"{opts.n_ms} inputs of {N_ANTENNAS} antennas, {size_gb:.2f} GB in all")
    floor = None
    failed = []
    for step in ("read inputs once", "concat", "fix-field", "rephase", "hot-baselines", "snapshot-qa flagging"):
        seconds, peak = measure(step, args)
        floor = floor or seconds
        print(f"{step:22s} {seconds:7.2f} s  {seconds / floor:5.2f} x read-once  peak {peak:6.0f} MB", flush=True)
        if step == "concat" and seconds / floor > TARGET_CONCAT_RATIO:
            failed.append(f"concat {seconds / floor:.2f} x read-once > {TARGET_CONCAT_RATIO}")
        if peak > TARGET_PEAK_MB:
            failed.append(f"{step} peak {peak:.0f} MB > {TARGET_PEAK_MB:.0f} MB")
    print("targets met" if not failed else "targets missed: " + "; ".join(failed))


if __name__ == "__main__":
    main()

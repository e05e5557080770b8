"""Benchmark of concat at full size: 6 Phase 1 outputs of 352 antennas (not a test).

The full-size MS of bench/phase1.py (simulated once, cached) is copied ``--n-ms`` times with its times
shifted by one integration each and calibrated (apply-calibration adds CORRECTED_DATA, as Phase 1
does); the inputs are cached too. Then, ``--repeat`` times in the same run, alternating: a read-once of
every defined column of every input in row chunks (bench/phase2.py's floor), and concat into a fresh
directory in a child process (bench/measure.py). Printed: best and median seconds of each, concat /
read-once (target <= 1.5, best of the runs) and concat's peak resident memory.

    .venv/bin/python bench/concat.py [--cache out/bench-concat] [--n-ms 6] [--repeat 3]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from datetime import datetime, timedelta
from pathlib import Path

from measure import in_child, peak_rss_mb
from phase1 import full_ms
from phase2 import read_once

ROOT = Path(__file__).resolve().parents[1]
TARGET_RATIO = 1.5


def make_inputs(cache: Path, n_ms: int) -> list[str]:
    """``n_ms`` calibrated full-size MS one integration apart, named by their start times (cached)."""
    marker = cache / "inputs.json"
    if marker.is_file():
        paths = json.loads(marker.read_text())
        if len(paths) == n_ms and all(Path(p).is_dir() for p in paths):
            return paths
    from casacore import tables

    from orca_steps.apply_calibration import apply_calibration
    from orca_steps.config import INTEGRATION_S

    src, bp_table, xy_table = full_ms(ROOT / "out" / "bench-phase1")
    shutil.rmtree(cache / "inputs", ignore_errors=True)
    start = datetime.strptime(src.name[:15], "%Y%m%d_%H%M%S")
    paths = []
    for k in range(n_ms):
        name = (start + timedelta(seconds=k * INTEGRATION_S)).strftime("%Y%m%d_%H%M%S") + src.name[15:]
        dest = cache / "inputs" / name
        print(f"making input {k + 1}/{n_ms}: {dest.name} ...", flush=True)
        shutil.copytree(src, dest)
        with tables.table(str(dest), readonly=False, ack=False) as tab:
            for column in ("TIME", "TIME_CENTROID"):
                tab.putcol(column, tab.getcol(column) + k * INTEGRATION_S)
        apply_calibration(dest, bp_table, xy_table)
        paths.append(str(dest))
    marker.write_text(json.dumps(paths, indent=1))
    return paths


def _concat(step: str, args: dict, queue) -> None:
    from casacore import tables  # noqa: F401 - imported before the clock starts, like in a warm pod

    from orca_steps.concat import concatenate_ms

    start = time.perf_counter()
    result = concatenate_ms(args["inputs"], args["out"])
    queue.put({"seconds": time.perf_counter() - start, "rss_mb": peak_rss_mb(), "n_rows": result.n_rows})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(ROOT / "out" / "bench-concat"))
    parser.add_argument("--n-ms", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cache = Path(args.cache).resolve()
    inputs = make_inputs(cache, args.n_ms)
    size_mb = sum(f.stat().st_size for p in inputs for f in Path(p).rglob("*") if f.is_file()) / 2**20
    reads, concats = [], []
    for k in range(args.repeat):
        reads.append(read_once(inputs))
        out = cache / "scratch" / "73MHz_concat.ms"
        shutil.rmtree(out.parent, ignore_errors=True)
        concats.append(in_child(_concat, "concat", {"inputs": inputs, "out": str(out)}))
    best_read, best_concat = min(reads), min(c["seconds"] for c in concats)
    print(f"\nconcat benchmark: {args.n_ms} MS of 352 antennas ({size_mb:.0f} MB in all), {args.repeat} runs; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"read-once   best {best_read:7.2f} s   median {statistics.median(reads):7.2f} s")
    print(f"concat      best {best_concat:7.2f} s   median {statistics.median(c['seconds'] for c in concats):7.2f} s"
          f"   peak RSS {max(c['rss_mb'] for c in concats):.0f} MB   rows {concats[0]['n_rows']}")
    ratio = best_concat / best_read
    print(f"concat / read-once (best of {args.repeat}) = {ratio:.2f}   (target <= {TARGET_RATIO}: "
          f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); medians: "
          f"{statistics.median(c['seconds'] for c in concats) / statistics.median(reads):.2f}")


if __name__ == "__main__":
    main()

"""Where apply-calibration spends its time on the full-size MS of bench/phase1.py (not a test).

cProfile of one run on a fresh copy, in CPU seconds (steadier than wall time on a shared machine),
grouped into casacore reads, interpolation (the solutions), the correction (numpy multiply and flag
OR) and casacore writes; and the CPU and wall time of a plain copy for scale. Best of ``--repeat``.

    .venv/bin/python bench/apply_profile.py [--cache out/bench-phase1]
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import time
from pathlib import Path

from phase1 import ROOT, full_ms

GROUPS = {  # function name -> group
    "getcolnp": "casacore read", "getcol": "casacore read", "getcell": "casacore read",
    "putcol": "casacore write", "flush": "casacore write", "close": "casacore write", "__exit__": "casacore write",
    "addcols": "casacore write",
    "solutions": "interpolation (solutions)",
    "correct_chunk": "correction (multiply, flags)",
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(ROOT / "out" / "bench-phase1"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    from casacore import tables  # noqa: F401 - imported before the clock starts

    from orca_steps.apply_calibration import apply_calibration

    cache = Path(args.cache).resolve()
    src, bp, xy = full_ms(cache)
    scratch = cache / "scratch" / "profile"
    best = None
    for _ in range(args.repeat):
        shutil.rmtree(scratch, ignore_errors=True)
        wall, cpu = time.perf_counter(), time.process_time()
        shutil.copytree(src, scratch / "plain" / src.name)
        plain = (time.perf_counter() - wall, time.process_time() - cpu)
        ms = scratch / "calib" / src.name
        shutil.copytree(src, ms)
        profile = cProfile.Profile(time.process_time)
        wall, cpu = time.perf_counter(), time.process_time()
        profile.runcall(apply_calibration, ms, bp, xy)
        total = (time.perf_counter() - wall, time.process_time() - cpu)
        if best is None or total[1] < best[0][1]:
            best = (total, plain, pstats.Stats(profile))
    (wall, cpu), (plain_wall, plain_cpu), stats = best
    seconds: dict[str, float] = {}
    for (_, _, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        group = GROUPS.get(name)
        if group:  # cumulative for our own functions, own time for casacore's methods
            seconds[group] = seconds.get(group, 0.0) + (cumtime if group.startswith(("interp", "corr")) else tottime)
    print(f"apply-calibration: CPU {cpu:.3f} s, wall {wall:.3f} s; plain copytree: CPU {plain_cpu:.3f} s, "
          f"wall {plain_wall:.3f} s (best CPU of {args.repeat}; profiled, so slower than unprofiled)")
    for group, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<32}{s:>8.3f} CPU s {100 * s / cpu:>5.1f} %")
    print(f"  {'other':<32}{cpu - sum(seconds.values()):>8.3f} CPU s")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

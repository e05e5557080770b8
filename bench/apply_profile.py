"""Where apply-calibration spends its time on the full-size MS of bench/phase1.py (not a test).

cProfile of one run on a fresh copy, in CPU seconds (steadier than wall time on a shared machine),
grouped into casacore reads, the solutions (computed from the tables, or loaded when an earlier MS of
the folder saved them), the correction (numpy multiply and flag OR) and casacore writes; and the CPU
and wall time of a plain copy for scale. The fresh copies share a folder, as an hour's MS do: the
first run computes the solutions ("first MS"), the others load them (best of the other ``--repeat``).

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
    "cached_solutions": "solutions (computed or loaded)",
    "correct_chunk": "correction (multiply, flags)",
}


def report(title: str, run) -> None:
    (wall, cpu), (plain_wall, plain_cpu), stats = run
    seconds: dict[str, float] = {}
    for (_, _, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        group = GROUPS.get(name)
        if group:  # cumulative for our own functions, own time for casacore's methods
            seconds[group] = seconds.get(group, 0.0) + (cumtime if group.startswith(("sol", "corr")) else tottime)
    print(f"{title}: apply-calibration CPU {cpu:.3f} s, wall {wall:.3f} s; plain copytree: CPU {plain_cpu:.3f} s, "
          f"wall {plain_wall:.3f} s (profiled, so slower than unprofiled)")
    for group, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<32}{s:>8.3f} CPU s {100 * s / cpu:>5.1f} %")
    print(f"  {'other':<32}{cpu - sum(seconds.values()):>8.3f} CPU s")


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
    shutil.rmtree(scratch, ignore_errors=True)
    runs = []
    for _ in range(1 + max(1, args.repeat)):
        shutil.rmtree(scratch / "plain", ignore_errors=True)
        wall, cpu = time.perf_counter(), time.process_time()
        shutil.copytree(src, scratch / "plain" / src.name)
        plain = (time.perf_counter() - wall, time.process_time() - cpu)
        ms = scratch / "calib" / src.name
        shutil.rmtree(ms, ignore_errors=True)  # the folder keeps the solutions its first MS saved
        shutil.copytree(src, ms)
        profile = cProfile.Profile(time.process_time)
        wall, cpu = time.perf_counter(), time.process_time()
        profile.runcall(apply_calibration, ms, bp, xy)
        runs.append(((time.perf_counter() - wall, time.process_time() - cpu), plain, pstats.Stats(profile)))
    report("first MS (solutions computed)", runs[0])
    report(f"other MS (solutions loaded; best CPU of {len(runs) - 1})", min(runs[1:], key=lambda r: r[0][1]))
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Where apply-calibration spends its time on the full-size MS of bench/phase1.py (not a test).

cProfile of one run on a fresh copy, grouped into casacore reads, interpolation (the solutions),
the correction (numpy multiply and flag OR) and casacore writes; then the plain copy for scale.

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
    args = parser.parse_args(argv)
    from casacore import tables  # noqa: F401 - imported before the clock starts

    from orca_steps.apply_calibration import apply_calibration

    cache = Path(args.cache).resolve()
    src, bp, xy = full_ms(cache)
    scratch = cache / "scratch" / "profile"
    shutil.rmtree(scratch, ignore_errors=True)
    start = time.perf_counter()
    shutil.copytree(src, scratch / "plain" / src.name)
    plain = time.perf_counter() - start
    ms = scratch / "calib" / src.name
    shutil.copytree(src, ms)
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.runcall(apply_calibration, ms, bp, xy)
    total = time.perf_counter() - start
    stats = pstats.Stats(profile)
    seconds: dict[str, float] = {}
    for (_, _, name), (_, _, tottime, cumtime, _) in stats.stats.items():
        group = GROUPS.get(name)
        if group:  # cumulative for our own functions, own time for casacore's methods
            seconds[group] = seconds.get(group, 0.0) + (cumtime if group.startswith(("interp", "corr")) else tottime)
    print(f"apply-calibration {total:.3f} s, plain copytree {plain:.3f} s ({total / plain:.2f}x)")
    for group, s in sorted(seconds.items(), key=lambda kv: -kv[1]):
        print(f"  {group:<32}{s:>8.3f} s {100 * s / total:>5.1f} %")
    print(f"  {'other':<32}{total - sum(seconds.values()):>8.3f} s")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How near apply-calibration is to the least any casacore-based correction can take (not a test).

On the full-size MS of bench/phase1.py, in the same run, each in a fresh child process on a fresh copy
of the MS (best and median of ``--repeat``), four loops that each add one unavoidable part to the last:
- ``plain copytree``: the yardstick of bench/phase1.py;
- ``casacore I/O``: open the MS, add CORRECTED_DATA like DATA, read DATA and FLAG in apply-calibration's
  chunks, write CORRECTED_DATA and FLAG (calibration flags the dead antennas' rows), close;
- ``+ correction``: the same with apply-calibration's ``correct_chunk`` (two complex multiplies per
  visibility, the solutions' flags ORed in), its solutions and antenna columns read before the clock;
- ``+ antenna columns``: ANTENNA1 and ANTENNA2 read inside the clock, as the correction needs them;
- ``apply-calibration``: the step itself, for a later MS of the hour (its solutions loaded). What it
  spends beyond the last loop is everything else: checks, sub-tables, loading the solutions, counting.

    .venv/bin/python bench/apply_floor.py [--cache out/bench-phase1] [--repeat 5]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
from pathlib import Path

from measure import in_child, run_measured
from phase1 import ROOT, full_ms

LOOPS = ("plain copytree", "casacore I/O", "+ correction", "+ antenna columns", "apply-calibration")


def _loop(tab, correct, antennas) -> None:
    """apply-calibration's chunk loop, with ``correct(data, flags, start, n)`` or nothing as its correction."""
    from orca_steps import apply_calibration as ac
    from orca_steps.msio import ensure_column
    from orca_steps.msread import read_chunks

    ensure_column(tab, "CORRECTED_DATA", like="DATA")
    if antennas is not None:
        antennas.extend([tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")])
    for chunk in read_chunks(tab, ["DATA", "FLAG"], ac.CHUNK_BYTES):
        data, flags = chunk["DATA"], chunk["FLAG"]
        if correct:
            data, flags = correct(data, flags, chunk.start, chunk.n)
        tab.putcol("CORRECTED_DATA", data, chunk.start, chunk.n)
        tab.putcol("FLAG", flags, chunk.start, chunk.n)


def _measure(loop: str, args: dict, queue) -> None:
    from casacore import tables

    from orca_steps import apply_calibration as ac

    ms = args["ms"]
    sols = a1 = a2 = None
    if loop in ("+ correction", "+ antenna columns"):  # prepared before the clock
        sols, _ = ac.cached_solutions(Path(ms), Path(args["bp_table"]), Path(args["xy_table"]), ac.solution_settings())
    if loop == "+ correction":
        with tables.table(ms, ack=False) as tab:
            a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
    read_antennas: list = []

    def correct(data, flags, start, n):
        ant1, ant2 = read_antennas if read_antennas else (a1, a2)
        return ac.correct_chunk(data, flags, ant1[start:start + n], ant2[start:start + n], sols[0])

    def io_loop():
        with tables.table(ms, readonly=False, ack=False) as tab:
            _loop(tab, correct if sols else None, read_antennas if loop == "+ antenna columns" else None)

    functions = {
        "plain copytree": lambda: shutil.copytree(args["src"], args["dest"]),
        "casacore I/O": io_loop, "+ correction": io_loop, "+ antenna columns": io_loop,
        "apply-calibration": lambda: ac.apply_calibration(ms, args["bp_table"], args["xy_table"]),
    }
    measured = run_measured(functions[loop], False)
    measured.pop("result")
    queue.put(measured)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(ROOT / "out" / "bench-phase1"), help="where the full MS is kept")
    parser.add_argument("--repeat", type=int, default=5, help="runs per loop (best and median are reported)")
    args = parser.parse_args(argv)
    from orca_steps.apply_calibration import apply_calibration

    cache = Path(args.cache).resolve()
    src, bp_table, xy_table = full_ms(cache)
    folder = cache / "scratch" / "floor"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ms = folder / src.name
    shutil.copytree(src, ms)
    apply_calibration(ms, bp_table, xy_table)  # the hour's first MS: saves the solutions the others load
    runs: dict[str, list[float]] = {loop: [] for loop in LOOPS}
    for _ in range(args.repeat):
        for loop in LOOPS:
            shutil.rmtree(ms, ignore_errors=True)
            shutil.rmtree(folder / "plain", ignore_errors=True)
            if loop != "plain copytree":
                shutil.copytree(src, ms)
            result = in_child(_measure, loop, {"src": str(src), "dest": str(folder / "plain"), "ms": str(ms),
                                               "bp_table": bp_table, "xy_table": xy_table})
            runs[loop].append(result["seconds"])
    best_plain, median_plain = min(runs[LOOPS[0]]), statistics.median(runs[LOOPS[0]])
    print(f"\napply-calibration against its floor: {src.name}, {args.repeat} runs per loop; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'loop':<20}{'best s':>8}{'x plain':>9}{'median s':>10}{'x plain':>9}")
    for loop, seconds in runs.items():
        best, median = min(seconds), statistics.median(seconds)
        print(f"{loop:<20}{best:>8.3f}{best / best_plain:>9.2f}{median:>10.3f}{median / median_plain:>9.2f}")
    floor, step = min(runs["+ antenna columns"]), min(runs["apply-calibration"])
    print(f"\nthe step spends {1e3 * (step - floor):.1f} ms ({100 * (step - floor) / step:.0f} %) beyond the floor "
          f"of {floor / best_plain:.2f}x a plain copy")
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

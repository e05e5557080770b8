"""Benchmark of Phase 2 (process-subband) on one simulated subband-hour (not a test).

The hour is simulated and taken through Phase 1 (flag, calibrate) first; those costs are not counted.
Then, in this process:
- every column of every Phase 1 output is read once, in row chunks: the floor for concat;
- process-subband runs the whole of Phase 2 (concat ... archive).
Printed: Phase 2 wall time as a ratio to the seconds spent inside WSClean and AOFlagger (target
<= 1.02: our own steps must be cheap next to the imagers), concat as a ratio to the read-once time,
and each step's time with the part spent in external tools.

    .venv/bin/python bench/phase2.py [--out out/bench-phase2] [--n-antennas 64] [--n-integrations 12]
                                     [--image-size 1024] [--image-scale-deg 0.125] [--threads N]
                                     [--skip-science]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

TARGET_RATIO = 1.02  # issue 17: our own steps cost at most 2 % over the imagers


def read_once(ms_paths: list[str]) -> float:
    """Seconds to read every defined column of every MS once, in row chunks (what concat must read)."""
    import numpy as np
    from casacore import tables

    from orca_steps.msio import row_chunks

    start = time.time()
    for path in ms_paths:
        with tables.table(path, ack=False) as tab:
            columns = [c for c in tab.colnames() if tab.iscelldefined(c, 0)]
            row_bytes = sum(np.asarray(tab.getcell(c, 0)).nbytes for c in columns)
            for begin, n in row_chunks(tab.nrows(), row_bytes):
                for column in columns:
                    tab.getcol(column, begin, n)
    return time.time() - start


def phase1(out: Path, n_antennas: int, n_integrations: int) -> tuple[dict, Path, list[str]]:
    from orca_steps.prepare_ms import prepare_ms
    from orca_steps.sim import simulate_night

    night = simulate_night(out / "lustre", n_antennas=n_antennas, n_integrations=n_integrations,
                           field_flux_jy=(400.0, 800.0), reference_catalogue=True)
    work = out / "fast" / "14h" / "2025-06-15" / "bench" / "73MHz"
    bad = sorted(set(night.truth["dead_antennas"] + night.truth["noisy_antennas"]))
    tables = night.truth["subbands"]["73MHz"]
    outs = [prepare_ms(str(p), str(work), tables["bp_table"], tables["xy_table"], bad_antennas=bad,
                       subband="73MHz").ms_path for p in night.ms_paths[("73MHz", 14)]]
    return night.truth, work, outs


def hour_arguments(doc: str, out: str) -> argparse.ArgumentParser:
    """The bench hour's options, shared by the Phase 2 benchmarks."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", default=out)
    parser.add_argument("--n-antennas", type=int, default=64)
    parser.add_argument("--n-integrations", type=int, default=12)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--image-scale-deg", type=float, default=0.125, help="1024 x 0.125 deg: the whole sky")
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    return parser


def main() -> None:
    parser = hour_arguments(__doc__, "out/bench-phase2")
    parser.add_argument("--skip-science", action="store_true", help="run Phase 2 with skip_science")
    args = parser.parse_args()

    from orca_steps.logs import setup_logging
    from orca_steps.process_subband import Options, process_subband
    from orca_steps.wsclean import CLEAN_SNAPSHOT, short_hour_recipes

    setup_logging("WARNING")
    out = Path(args.out).resolve()
    shutil.rmtree(out, ignore_errors=True)
    print(f"simulating {args.n_antennas} antennas x {args.n_integrations} integrations and running Phase 1 ...",
          flush=True)
    truth, work, outs = phase1(out, args.n_antennas, args.n_integrations)
    floor = read_once(outs)
    strategy = out / "keep-flags.lua"  # the generic strategy flags sparse A-team fringes (tests/steps/phase2_unit.py)
    strategy.write_text('aoflagger.require_min_version("3.0")\nfunction execute(input)\n  input:flag_nans()\nend\n')
    options = Options(ms_paths=outs, work_dir=str(work), subband="73MHz", lst_label="14h", obs_date="2025-06-15",
                      run_label="bench", archive_root=str(out / "lustre" / "images"), strategy=str(strategy),
                      beam=truth["refs"]["beam"], vlssr_catalog=str(Path(truth["refs"]["beam"]).with_name("vlssr_catalog.txt")),
                      image_size=args.image_size, image_scale_deg=args.image_scale_deg,
                      wsclean_threads=args.threads, hot_baselines=True, compress_snapshots=True,
                      skip_science=args.skip_science)
    site = out / "site.json"  # orca's recipes for an hour of few integrations (wsclean.short_hour_recipes)
    site.write_text(json.dumps({"wsclean_recipes": short_hour_recipes().model_dump(mode="json")}))
    os.environ["ORCA_CONFIG"] = str(site)
    print(f"Phase 2: {args.image_size} px x {args.image_scale_deg} deg, WSClean -j {args.threads}, "
          f"10-minute clean -nmiter {CLEAN_SNAPSHOT.options.nmiter} (short_hour_recipes), "
          f"skip_science={args.skip_science} ...", flush=True)
    start = time.time()
    result = process_subband(options)
    wall = time.time() - start

    timings = [json.loads(line) for line in (work / "timings.jsonl").read_text().splitlines()]
    tool_seconds = {t["step"]: sum(v for k, v in t.items() if k.endswith("_seconds"))
                    for t in timings if t["start"] >= start - 1}
    tool_seconds["aoflagger"] = json.loads((work / ".done" / "aoflagger.json").read_text())["result"]["seconds"]
    wsclean = sum(t.get("wsclean_seconds", 0.0) for t in timings if t["start"] >= start - 1)
    tools = wsclean + tool_seconds["aoflagger"]
    concat = next(r.seconds for r in result.steps if r.step == "concat")

    print(f"\n{'step':<18}{'seconds':>10}{'in tools':>10}{'ours':>10}")
    for r in result.steps:
        if r.status == "ran":
            inside = tool_seconds.get(r.step, 0.0)
            print(f"{r.step:<18}{r.seconds:>10.1f}{inside:>10.1f}{r.seconds - inside:>10.1f}")
    print(f"\nPhase 2 wall time        {wall:8.1f} s   (archive: {result.archive_path})")
    print(f"inside WSClean           {wsclean:8.1f} s")
    print(f"inside AOFlagger         {tool_seconds['aoflagger']:8.1f} s")
    print(f"wall / (WSClean + AOFlagger) = {wall / tools:.3f}   (target <= {TARGET_RATIO})")
    print(f"concat {concat:.1f} s / read-once {floor:.1f} s = {concat / floor:.2f}")


if __name__ == "__main__":
    main()

"""Helpers shared by the Phase 2 data-step tests: Phase-1-like inputs, a fixed and re-centred concat,
and real WSClean pilot snapshots named by their UTC mid-time."""
from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
from casacore import tables

from orca_steps.concat import concatenate_ms
from orca_steps.fix_field import fix_field
from orca_steps.msio import ensure_column
from orca_steps.rephase import lst_phase_centre, rephase_ms
from orca_steps.sim import simulate_night
from orca_steps.constants import MJD_EPOCH
from orca_steps.snapshot_qa import ms_times
from orca_steps.tools import run_tool


def make_phase1_like(ms: Path, flag_antennas: list[int] = ()) -> None:
    """What Phase 1 leaves: CORRECTED_DATA (here a copy of DATA) and bad antennas flagged."""
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        ensure_column(tab, "CORRECTED_DATA")
        tab.putcol("CORRECTED_DATA", tab.getcol("DATA"))
        if flag_antennas:
            a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
            flags = tab.getcol("FLAG")
            flags[np.isin(a1, flag_antennas) | np.isin(a2, flag_antennas)] = True
            tab.putcol("FLAG", flags)


def phase1_outputs(root: Path, flag_bad_antennas: bool = False, **features) -> tuple[list[Path], dict]:
    """Simulate one subband-hour (73MHz, LST 14h) and turn each MS into a Phase-1-like output."""
    night = simulate_night(root / "sim", **features)
    paths = night.ms_paths[("73MHz", 14)]
    bad = night.truth["dead_antennas"] + night.truth["noisy_antennas"] if flag_bad_antennas else []
    for p in paths:
        make_phase1_like(p, bad)
    return paths, night.truth


def prepared_concat(root: Path, **features) -> tuple[Path, list[Path], dict]:
    """Concat, fix-field and rephase of a simulated hour: the MS AOFlagger and the imagers see."""
    paths, truth = phase1_outputs(root, **features)
    result = concatenate_ms(paths, root / "work" / "73MHz_concat.ms")
    fix_field(result.concat_ms)
    rephase_ms(result.concat_ms, *lst_phase_centre("14h"))
    return Path(result.concat_ms), paths, truth


def pilot_snapshots(ms: Path, out_dir: Path, n_intervals: int) -> list[Path]:
    """Real WSClean dirty snapshots (-pol IV), renamed -tNNNN- -> -YYYYMMDD_HHMMSS- (UTC mid-time)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    run_tool(["wsclean", "-quiet", "-pol", "IV", "-niter", "0", "-intervals-out", n_intervals, "-size", 256, 256,
              "-scale", 0.5, "-j", 1, "-no-dirty", "-name", out_dir / "pilot", ms], log_file=out_dir / "wsclean.log")
    times, _ = ms_times(ms)
    per_interval = np.array_split(times, n_intervals)  # WSClean splits the timesteps evenly
    renamed = []
    for image in sorted(out_dir.glob("pilot-t*-image.fits")):
        k = int(re.search(r"-t(\d{4})-", image.name).group(1))
        mid = (per_interval[k][0] + per_interval[k][-1]) / 2
        stamp = (MJD_EPOCH + timedelta(seconds=float(mid))).strftime("%Y%m%d_%H%M%S")
        target = image.with_name(image.name.replace(f"-t{k:04d}-", f"-{stamp}-"))
        image.rename(target)
        renamed.append(target)
    return renamed


def flag_rows(ms: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TIME, ANTENNA1, ANTENNA2 and per-row 'all flagged' of an MS."""
    with tables.table(str(ms), ack=False) as tab:
        return (tab.getcol("TIME"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2"),
                tab.getcol("FLAG").all(axis=(1, 2)))

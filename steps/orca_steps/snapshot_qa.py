"""Step ``snapshot-qa``: find bad integrations from the pilot snapshots and flag them in the MS.

orca's metrics, on the Stokes V snapshots (no sky, so the noise shows): per image the rms (standard
deviation) of the central 1024 x 1024 pixels (the whole image when smaller) and the peak |value|. An
image is bad if its rms > median + 3 MAD_std or < 0.5 median. Writes ``QA/snapshot_qa_<sb>.csv`` and
``QA/snapshot_rms_<sb>.png``.

Flagging is by TIME: each snapshot's name carries its UTC mid-time (YYYYMMDD_HHMMSS); every distinct
TIME of the MS belongs to the nearest snapshot, and the rows of a bad snapshot's times are flagged.
(orca mapped image index to SCAN_NUMBER, which assumes one scan per integration.)
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .config import check_subband
from .constants import STOKES_CODES, mjd_seconds, utc_of
from .errors import InputError
from .fileio import write_csv
from .labels import Subband
from .logs import get_logger, log, step_timer
from .products import QA_FOLDER, snapshot_qa_csv, snapshot_rms_plot
from .msio import open_ms
from .msread import flag_rows_where, read_chunks

_logger = get_logger("snapshot-qa")
CSV_COLUMNS = ["file", "utc", "time_mjd_s", "rms", "peak", "bad", "reason"]
_TIME_RE = re.compile(r"(\d{8}_\d{6})")


class Options(BaseModel):
    ms: str = Field(description="MS to flag (the concat the snapshots were made from)")
    snapshots: list[str] = Field(description="pilot snapshot FITS files; names carry the UTC mid-time YYYYMMDD_HHMMSS")
    subband: Subband = Field(description="subband label, names the QA files")
    work_dir: str | None = Field(None, description="QA/ goes here (default: the MS's folder)")
    stokes: str = Field("V", description="Stokes parameter of the snapshots to judge (orca: V)")
    box: int = Field(1024, description="side of the central box (pixels) the rms is measured in")
    high_sigma: float = Field(3.0, description="bad if rms > median + high_sigma * MAD_std")
    low_fraction: float = Field(0.5, description="bad if rms < low_fraction * median")


class SnapshotStat(BaseModel):
    file: str
    utc: str
    time_mjd_s: float
    rms: float
    peak: float
    bad: bool
    reason: str = ""


class Result(BaseModel):
    ms_path: str
    csv: str
    plot: str
    n_snapshots: int
    median_rms: float
    high_threshold: float
    low_threshold: float
    bad: list[SnapshotStat]
    times_flagged: list[float] = Field(description="MS TIME values (MJD s) whose rows were flagged")
    rows_flagged: int


def snapshot_time(path: str | Path) -> float:
    """MJD seconds (UTC) of the mid-time written in a snapshot's file name."""
    match = _TIME_RE.search(Path(path).name)
    if not match:
        raise InputError(f"{path}: snapshot name carries no UTC time YYYYMMDD_HHMMSS")
    try:
        when = datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise InputError(f"{path}: snapshot name has an invalid time {match.group(1)!r}") from exc
    return mjd_seconds(when)


def _stokes_of(header) -> int | None:
    for axis in range(1, int(header.get("NAXIS", 0)) + 1):
        if str(header.get(f"CTYPE{axis}", "")).upper() == "STOKES":
            return int(round(float(header[f"CRVAL{axis}"])))
    return None


def image_stats(path: str | Path, box: int = 1024) -> tuple[float, float, int | None]:
    """(rms of the central box, peak |value|, Stokes code) of one FITS image."""
    from astropy.io import fits

    try:
        with fits.open(path, memmap=True) as hdul:
            header = hdul[0].header
            data = np.asarray(hdul[0].data, dtype=float).squeeze()
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read FITS image: {exc}") from exc
    if data.ndim != 2:
        raise InputError(f"{path}: expected one image plane, found shape {data.shape}")
    h, w = data.shape
    half = box // 2
    centre = data[max(0, h // 2 - half):h // 2 + half, max(0, w // 2 - half):w // 2 + half]
    return float(np.nanstd(centre)), float(np.nanmax(np.abs(data))), _stokes_of(header)


def judge(rms: np.ndarray, high_sigma: float = 3.0, low_fraction: float = 0.5) -> tuple[np.ndarray, float, float, float]:
    """orca's rule: bad if rms > median + high_sigma * MAD_std or < low_fraction * median."""
    from astropy.stats import mad_std

    median = float(np.nanmedian(rms))
    high = median + high_sigma * float(mad_std(rms, ignore_nan=True))
    low = low_fraction * median
    return (rms > high) | (rms < low), median, high, low


def ms_times(ms: str | Path) -> tuple[np.ndarray, float]:
    """Distinct TIME values of the MS (streamed) and its median INTERVAL (s)."""
    seen = []
    with open_ms(ms) as tab:
        for chunk in read_chunks(tab, ["TIME"]):
            seen.append(np.unique(chunk["TIME"]))
        interval = float(np.median(tab.getcol("INTERVAL", startrow=0, nrow=min(tab.nrows(), 1000))))
    return np.unique(np.concatenate(seen)) if seen else np.zeros(0), interval


def assign_times(times: np.ndarray, snap_times: np.ndarray, interval: float, names: list[str]) -> np.ndarray:
    """For each MS time, the index of the nearest snapshot; every snapshot must lie on the MS's times.

    A name's time is truncated to the second, so a snapshot may lie up to half an integration + 1 s
    from the nearest TIME (also when it spans an even number of integrations).
    """
    gaps = np.abs(times[:, None] - snap_times[None, :])  # (n_times, n_snapshots): a few hundred each
    tolerance = interval / 2 + 1.0
    for k, gap in enumerate(gaps.min(axis=0) if times.size else np.full(snap_times.size, np.inf)):
        if gap > tolerance:
            raise InputError(f"{names[k]}: snapshot time matches no integration of the MS "
                             f"(nearest TIME is {gap:.1f} s away, tolerance {tolerance:.1f} s)")
    return gaps.argmin(axis=1)


def flag_times(ms: str | Path, bad_times: np.ndarray) -> int:
    """Flag every row whose TIME is in ``bad_times``; returns the number of rows flagged."""
    if bad_times.size == 0:
        return 0
    with open_ms(ms, readonly=False) as tab:
        return flag_rows_where(tab, ["TIME"], lambda c: np.isin(c["TIME"], bad_times))


def _plot(stats: list[SnapshotStat], median: float, high: float, low: float, subband: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = min(s.time_mjd_s for s in stats)
    minutes = np.array([(s.time_mjd_s - t0) / 60 for s in stats])
    rms = np.array([s.rms for s in stats])
    bad = np.array([s.bad for s in stats])
    fig, ax = plt.subplots(figsize=(10, 5))
    ax.plot(minutes, rms, "b.-", label="rms")
    ax.plot(minutes[bad], rms[bad], "rx", markersize=10, label="flagged")
    for value, style, label in ((median, "-", "median"), (high, "--", "high threshold"), (low, ":", "low threshold")):
        ax.axhline(value, color="grey", linestyle=style, label=label)
    ax.set_xlabel(f"minutes since {stats[int(np.argmin(minutes))].utc} UTC")
    ax.set_ylabel("snapshot rms (Jy/beam)")
    ax.set_title(f"Snapshot QA {subband}")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def snapshot_qa(ms: str | Path, snapshots: list[str], qa_dir: str | Path, subband: str, stokes: str = "V",
                box: int = 1024, high_sigma: float = 3.0, low_fraction: float = 0.5) -> Result:
    """Judge the ``stokes`` snapshots, write the CSV and plot to ``qa_dir``, flag bad integrations in ``ms``."""
    check_subband(subband)
    if stokes not in STOKES_CODES:
        raise InputError(f"unknown Stokes parameter {stokes!r}: expected one of {', '.join(STOKES_CODES)}")
    chosen, rms, peak = [], [], []
    for path in sorted(map(str, snapshots)):
        if not Path(path).is_file():
            raise InputError(f"{path}: snapshot does not exist")
        r, p, code = image_stats(path, box)
        if code == STOKES_CODES[stokes]:
            chosen.append(path)
            rms.append(r)
            peak.append(p)
    if not chosen:
        raise InputError(f"{ms}: none of the {len(snapshots)} snapshots is a Stokes {stokes} image")
    snap_times = np.array([snapshot_time(p) for p in chosen])
    bad, median, high, low = judge(np.array(rms), high_sigma, low_fraction)
    times, interval = ms_times(ms)
    owner = assign_times(times, snap_times, interval, chosen)
    bad_times = times[bad[owner]]
    stats = [SnapshotStat(file=p, utc=utc_of(t).strftime("%Y-%m-%dT%H:%M:%S"),
                          time_mjd_s=float(t), rms=r, peak=pk, bad=bool(b),
                          reason=("rms above median + %g MAD_std" % high_sigma if r > high else
                                  "rms below %g x median" % low_fraction if r < low else ""))
             for p, t, r, pk, b in zip(chosen, snap_times, rms, peak, bad)]
    stats.sort(key=lambda s: s.time_mjd_s)
    rows = flag_times(ms, bad_times)
    qa_dir = Path(qa_dir)
    qa_dir.mkdir(parents=True, exist_ok=True)
    csv_path, plot_path = qa_dir / snapshot_qa_csv(subband), qa_dir / snapshot_rms_plot(subband)
    write_csv(csv_path, ({"file": Path(s.file).name, "utc": s.utc, "time_mjd_s": f"{s.time_mjd_s:.3f}",
                          "rms": f"{s.rms:.6g}", "peak": f"{s.peak:.6g}", "bad": int(s.bad), "reason": s.reason}
                         for s in stats), CSV_COLUMNS)
    _plot(stats, median, high, low, subband, plot_path)
    log(_logger, "snapshot QA", ms=str(ms), n_snapshots=len(stats), n_bad=int(bad.sum()), rows_flagged=rows)
    return Result(ms_path=str(ms), csv=str(csv_path), plot=str(plot_path), n_snapshots=len(stats), median_rms=median,
                  high_threshold=high, low_threshold=low, bad=[s for s in stats if s.bad],
                  times_flagged=[float(t) for t in bad_times], rows_flagged=rows)


def run(options: Options) -> Result:
    work_dir = Path(options.work_dir) if options.work_dir else Path(options.ms).parent
    with step_timer("snapshot-qa", work_dir, subband=options.subband):
        return snapshot_qa(options.ms, options.snapshots, work_dir / QA_FOLDER, options.subband, options.stokes,
                           options.box, options.high_sigma, options.low_fraction)

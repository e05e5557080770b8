"""Step ``flag-antennas``: flag every baseline of the bad antennas.

Where the bad antennas come from, in order:
1. ``bad_antennas``: an explicit list of correlator indices (ANTENNA table rows);
2. ``flag_csv``: a health file with header ``timestamp_utc,antennas``, one record a line, e.g.
   ``2025-06-15T04:00:00,3;17;250`` (ISO UTC time; ';'-separated correlator indices; empty = none bad).
   The record nearest the MS time is used if within ``csv_tolerance_hours``;
3. autodetection (when neither is given, or also with ``autodetect``) from autocorrelation power: per antenna, the median over channels of
   |XX| + |YY|; *dead* if below ``dead_fraction`` of the array median, *noisy* if its log10 lies more
   than ``noisy_sigma`` robust sigmas (1.4826 MAD) above the array's.

orca flags nothing, silently, when its health database fails. Here a failing list/CSV source
(missing file, no record near the time) falls back to autodetection with a WARNING, or raises if
``on_source_failure='error'``.
"""
from __future__ import annotations

import csv
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from .constants import utc_of
from .errors import InputError
from .logs import get_logger, log, step_timer
from .msio import check_ms, linear_correlation_index, open_ms, open_table, require_columns
from .msread import flag_rows_where, read_chunks

_logger = get_logger("flag-antennas")
OnSourceFailure = Literal["autodetect", "error"]


class SourceUnavailable(InputError):
    """The CSV has no usable record (missing file, no record near the MS time): may fall back.

    A malformed CSV is a plain InputError instead: a broken file is fixed, not worked around.
    """


class Options(BaseModel):
    ms: str = Field(description="MS to flag in place (the NVMe copy)")
    bad_antennas: list[int] | None = Field(None, description="correlator indices of bad antennas (overrides the CSV)")
    flag_csv: str | None = Field(None, description="antenna health CSV: timestamp_utc,antennas ('a;b;c')")
    csv_tolerance_hours: float = Field(12.0, description="use the CSV record nearest the MS time only if this close")
    on_source_failure: OnSourceFailure = Field(
        "autodetect", description="when the list/CSV source fails: autodetect (with a warning) or raise")
    autodetect: bool = Field(False, description="also autodetect and flag, in addition to the list/CSV antennas")
    dead_fraction: float = Field(0.1, description="dead: median auto power below this fraction of the array median")
    noisy_sigma: float = Field(5.0, description="noisy: log auto power this many robust sigmas above the median")


class Result(BaseModel):
    ms_path: str
    flagged: list[int] = Field(description="correlator indices flagged")
    source: str = Field(description="'list', 'csv', 'autodetect' or e.g. 'csv+autodetect'")
    dead: list[int] = Field(default_factory=list, description="antennas autodetection found dead")
    absent: list[int] = Field(default_factory=list, description=(
        "antennas of the ANTENNA table with no rows in the MS: not in the data, so neither dead nor flagged"))
    noisy: list[int] = Field(default_factory=list, description="antennas autodetection found noisy")
    fallback_reason: str | None = Field(None, description="why the list/CSV source was not used, if it failed")
    rows_flagged: int = 0


# --- sources ----------------------------------------------------------------------------------
def _parse_utc(text: str) -> datetime:
    dt = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def read_flag_csv(path: str | Path) -> list[tuple[datetime, list[int]]]:
    """Records of a health CSV; a malformed line raises InputError naming file and line."""
    path = Path(path)
    try:
        rows = list(csv.reader(path.read_text().splitlines()))
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: antenna CSV is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    records = []
    reader = iter(rows)
    header = [h.strip() for h in next(reader, [])]
    if header[:2] != ["timestamp_utc", "antennas"]:
        raise InputError(f"{path}: antenna CSV header must be 'timestamp_utc,antennas', found {','.join(header)!r}")
    for line_no, row in enumerate(reader, start=2):
        if not row or not "".join(row).strip():
            continue
        try:
            when = _parse_utc(row[0])
            ants = [int(a) for a in (row[1] if len(row) > 1 else "").split(";") if a.strip()]
        except ValueError as exc:
            raise InputError(f"{path}: line {line_no} is malformed ({','.join(row)!r}): {exc}") from exc
        records.append((when, ants))
    return records


def csv_antennas(path: str | Path, when: datetime, tolerance_hours: float) -> list[int]:
    """Bad antennas of the CSV record nearest ``when``; InputError if none is close enough."""
    path = Path(path)
    if not path.is_file():
        raise SourceUnavailable(f"{path}: antenna CSV does not exist")
    records = read_flag_csv(path)
    if not records:
        raise SourceUnavailable(f"{path}: antenna CSV has no records")
    nearest_time, ants = min(records, key=lambda r: abs((r[0] - when).total_seconds()))
    gap_h = abs((nearest_time - when).total_seconds()) / 3600
    if gap_h > tolerance_hours:
        raise SourceUnavailable(f"{path}: no record within {tolerance_hours} h of {when.isoformat()} "
                         f"(nearest {nearest_time.isoformat()}, {gap_h:.1f} h away)")
    return ants


def auto_power(ms: str | Path) -> np.ndarray:
    """Per antenna, the median over unflagged channels of |XX| + |YY| of its autocorrelations."""
    xx, yy = linear_correlation_index(ms)[[0, 3]]
    with open_ms(ms) as tab:
        require_columns(tab, ms, "DATA", "FLAG")
        n_ant = _n_antennas(ms)
        autos = tab.query("ANTENNA1==ANTENNA2", columns="ANTENNA1,DATA,FLAG")
        try:
            ant = autos.getcol("ANTENNA1") if autos.nrows() else np.zeros(0, int)
            data = autos.getcol("DATA") if autos.nrows() else np.zeros((0, 1, 4), np.complex64)
            flag = autos.getcol("FLAG") if autos.nrows() else np.zeros((0, 1, 4), bool)
        finally:
            autos.close()
    if ant.size == 0:
        raise InputError(f"{ms}: no autocorrelations, cannot autodetect bad antennas")
    power = np.abs(data[:, :, xx]) + np.abs(data[:, :, yy])
    power = np.where(flag[:, :, xx] | flag[:, :, yy], np.nan, power)
    per_ant = np.full(n_ant, np.nan)
    for a in np.unique(ant):
        values = power[ant == a]
        per_ant[a] = np.nanmedian(values) if np.isfinite(values).any() else np.nan
    return per_ant


def detect_bad_antennas(power: np.ndarray, dead_fraction: float, noisy_sigma: float,
                        absent: list[int] = ()) -> tuple[list[int], list[int]]:
    """(dead, noisy) from per-antenna auto power; NaN (no unflagged autos) counts as dead unless the
    antenna is ``absent`` (no rows at all)."""
    present = ~np.isin(np.arange(power.size), list(absent))
    ok = np.isfinite(power) & (power > 0) & present
    if not ok.any():
        return [int(a) for a in np.flatnonzero(present)], []
    median = np.median(power[ok])
    dead = present & (~ok | (power < dead_fraction * median))
    logp = np.log10(np.where(ok, power, 1.0))
    live = ~dead
    centre = np.median(logp[live])
    sigma = 1.4826 * np.median(np.abs(logp[live] - centre))
    noisy = live & (logp > centre + noisy_sigma * max(sigma, 1e-3))
    return [int(a) for a in np.flatnonzero(dead)], [int(a) for a in np.flatnonzero(noisy)]


# --- flagging ---------------------------------------------------------------------------------
def _n_antennas(ms: str | Path) -> int:
    with open_table(Path(ms) / "ANTENNA") as ant:
        return ant.nrows()


def absent_antennas(ms: str | Path, n_ant: int) -> list[int]:
    """Antennas of the ANTENNA table that appear in no row (a subarray, or a station not yet built)."""
    seen = np.zeros(n_ant, bool)
    with open_ms(ms) as tab:
        for chunk in read_chunks(tab, ["ANTENNA1", "ANTENNA2"]):
            seen[chunk["ANTENNA1"]] = True
            seen[chunk["ANTENNA2"]] = True
    return [int(a) for a in np.flatnonzero(~seen)]


def _ms_time(tab) -> datetime:
    return utc_of(tab.getcell("TIME", 0))


def flag_rows(ms: str | Path, antennas: list[int]) -> int:
    """Set FLAG (all channels, correlations) and FLAG_ROW on rows touching ``antennas``; streams row chunks."""
    bad = np.zeros(_n_antennas(ms), bool)
    bad[antennas] = True
    with open_ms(ms, readonly=False) as tab:
        require_columns(tab, ms, "FLAG")
        return flag_rows_where(tab, ["ANTENNA1", "ANTENNA2"], lambda c: bad[c["ANTENNA1"]] | bad[c["ANTENNA2"]])


def flag_antennas(ms: str | Path, bad_antennas: list[int] | None = None, flag_csv: str | None = None,
                  csv_tolerance_hours: float = Options.model_fields["csv_tolerance_hours"].default,
                  on_source_failure: str = Options.model_fields["on_source_failure"].default,
                  autodetect: bool = Options.model_fields["autodetect"].default,
                  dead_fraction: float = Options.model_fields["dead_fraction"].default,
                  noisy_sigma: float = Options.model_fields["noisy_sigma"].default) -> Result:
    """Flag the bad antennas of ``ms`` in place; see the module docstring for where they come from."""
    n_ant = _n_antennas(check_ms(ms))
    with open_ms(ms) as tab:
        when = _ms_time(tab)
    chosen: list[int] = []
    sources: list[str] = []
    reason = None
    if bad_antennas is not None:
        chosen, sources = list(bad_antennas), ["list"]
    elif flag_csv:
        try:
            chosen, sources = csv_antennas(flag_csv, when, csv_tolerance_hours), ["csv"]
        except SourceUnavailable as exc:
            if on_source_failure == "error":
                raise
            reason = str(exc)
            log(_logger, "antenna CSV failed: autodetecting bad antennas instead", logging.WARNING,
                ms=str(ms), reason=reason)
    else:
        log(_logger, "no antenna list or CSV given: autodetecting bad antennas", ms=str(ms))
    out_of_range = [a for a in chosen if not 0 <= a < n_ant]
    if out_of_range:
        raise InputError(f"{ms}: bad antennas {out_of_range} ({sources[0]}) are not correlator indices 0..{n_ant - 1}")
    dead, noisy, absent = [], [], []
    if not sources or autodetect:
        absent = absent_antennas(ms, n_ant)
        dead, noisy = detect_bad_antennas(auto_power(ms), dead_fraction, noisy_sigma, absent)
        sources.append("autodetect")
        chosen = chosen + dead + noisy
    flagged = sorted(set(int(a) for a in chosen))
    rows = flag_rows(ms, flagged) if flagged else 0
    log(_logger, "flagged antennas", ms=str(ms), antennas=flagged, source="+".join(sources), rows=rows,
        absent=absent)
    return Result(ms_path=str(ms), flagged=flagged, source="+".join(sources), dead=dead, noisy=noisy, absent=absent,
                  fallback_reason=reason, rows_flagged=rows)


def run(options: Options) -> Result:
    with step_timer("flag-antennas", Path(options.ms).parent):
        return flag_antennas(**options.model_dump())

"""Step ``concat``: join the Phase 1 outputs of one subband-hour into ``<work_dir>/<sb>_concat.ms``.

Rows are in time order. An input that cannot be read, whose name disagrees with its data (subband or
start time), that disagrees with the majority (other channels, antennas, correlations, data columns)
or repeats a time already covered, is dropped with
its reason in the result and in ``<sb>_concat.json`` (orca scraped CASA's log for this, and retried).

Each input keeps its own FIELD row (its zenith at that integration) and its rows keep pointing at it
through FIELD_ID, so fix-field can record every row's phase centre before it merges the fields.

Resume: the MS is built under a temporary name, renamed, and only then is ``<sb>_concat.json``
written, recording the inputs. A concat is reused when that record matches the requested inputs and
no later in-place step left it half-written; otherwise it is rebuilt. Inputs are only read.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import config, msstate
from .config import check_subband
from .constants import mjd_seconds, utc_of
from .discover import file_start_time, file_subband
from .errors import InputError
from .fileio import atomic_path, remove_stale_temps, write_json
from .labels import Subband
from .logs import get_logger, log, step_timer
from .msio import check_ms, open_table
from .msread import read_chunks

_logger = get_logger("concat")
DATA_COLUMNS = ("DATA", "CORRECTED_DATA", "MODEL_DATA")
TIME_SLACK_S = 1.0  # names carry whole seconds
SSM_BUCKET_BYTES = 64 * 1024


class Options(BaseModel):
    ms_paths: list[str] = Field(description="Phase 1 outputs (MS on NVMe) of one subband-hour, any order")
    work_dir: str = Field(description="NVMe work dir of the unit; the concat is written here")
    subband: Subband = Field(description="subband label, e.g. 73MHz (names the output <sb>_concat.ms)")


class Dropped(BaseModel):
    path: str
    reason: str


class Result(BaseModel):
    concat_ms: str
    record: str = Field(description="JSON file with inputs, used and dropped MS")
    n_inputs: int
    used: list[str] = Field(description="MS joined, in time order")
    dropped: list[Dropped]
    n_rows: int
    reused: bool = Field(description="an existing complete concat of the same inputs was kept")


@dataclass
class _Input:
    path: str
    t_start: float
    t_end: float
    nrows: int
    time_sorted: bool
    signature: dict


def concat_paths(work_dir: str | Path, subband: str) -> tuple[Path, Path]:
    """The concat MS and its completion record for one unit."""
    check_subband(subband)
    out = Path(work_dir) / f"{subband}_concat.ms"
    return out, out.with_suffix(".json")


# --- inspecting the inputs -------------------------------------------------------------------------
def _signature(path: Path, tab) -> dict:
    """What must agree between inputs for their rows to share one MS."""
    def col(sub: str, name: str) -> list:
        with open_table(path / sub) as t:
            return [np.asarray(t.getcell(name, i)).tolist() for i in range(t.nrows())]

    with open_table(path / "ANTENNA") as ant:
        positions = np.round(np.asarray(ant.getcol("POSITION"), dtype=float), 3).tolist() if ant.nrows() else []
        antennas = list(zip(ant.getcol("NAME"), map(tuple, positions))) if ant.nrows() else []
    return {
        "channels": [np.round(f, 1).tolist() for f in col("SPECTRAL_WINDOW", "CHAN_FREQ")],
        "correlations": col("POLARIZATION", "CORR_TYPE"),
        "data descriptions": list(zip(col("DATA_DESCRIPTION", "SPECTRAL_WINDOW_ID"),
                                      col("DATA_DESCRIPTION", "POLARIZATION_ID"))),
        "antennas": antennas,
        "columns": sorted(tab.colnames()),
    }


def _inspect(path: str) -> _Input:
    """Read what concat needs to know about one input; InputError if it cannot be read."""
    p = check_ms(path)
    with open_table(p) as tab:
        try:
            nrows = tab.nrows()
            if nrows == 0:
                raise InputError(f"{p}: has no rows")
            times = tab.getcol("TIME")
            for column in DATA_COLUMNS:
                if column in tab.colnames():
                    tab.getcell(column, nrows - 1)  # a truncated data file fails here, not mid-concat
            signature = _signature(p, tab)
        except RuntimeError as exc:
            raise InputError(f"{p}: unreadable: {exc}") from exc
    return _Input(str(p), float(times.min()), float(times.max()), nrows,
                  bool(np.all(np.diff(times) >= 0)), signature)


def _freq_text(channels: list) -> str:
    return "; ".join(f"{len(f)} channels {f[0] / 1e6:.3f}-{f[-1] / 1e6:.3f} MHz" if f else "0 channels"
                     for f in channels)


def _difference(sig: dict, ref: dict) -> str:
    """Why ``sig`` does not match the reference signature, in words."""
    if sig["channels"] != ref["channels"]:
        return f"spectral windows differ: {_freq_text(sig['channels'])}, expected {_freq_text(ref['channels'])}"
    if sig["correlations"] != ref["correlations"]:
        return f"correlations differ: CORR_TYPE {sig['correlations']}, expected {ref['correlations']}"
    if sig["data descriptions"] != ref["data descriptions"]:
        return "DATA_DESCRIPTION table differs"
    if sig["antennas"] != ref["antennas"]:
        names, ref_names = [a[0] for a in sig["antennas"]], [a[0] for a in ref["antennas"]]
        if names != ref_names:
            return f"antennas differ: {len(names)} antennas, expected {len(ref_names)} in the same order"
        return "antenna positions differ"
    missing = sorted(set(ref["columns"]) - set(sig["columns"]))
    extra = sorted(set(sig["columns"]) - set(ref["columns"]))
    parts = [f"no {c} (the others have it)" for c in missing] + [f"extra column {c}" for c in extra]
    return "; ".join(parts) or "differs from the others"


def data_subband(channels: list[list[float]]) -> str | None:
    """The subband whose band holds the first window's centre frequency (None if none does)."""
    if not channels or not channels[0]:
        return None
    index = int((float(np.mean(channels[0])) - config.FIRST_SUBBAND_EDGE_HZ) // config.SUBBAND_WIDTH_HZ)
    return config.SUBBAND_LABELS[index] if 0 <= index < len(config.SUBBAND_LABELS) else None


def name_disagreement(item: _Input) -> str | None:
    """Why the file name (``YYYYMMDD_HHMMSS_<sb>...``) disagrees with the data, if it does.

    A name that does not follow the pattern says nothing and is not checked."""
    try:
        named_time = file_start_time(item.path)
    except InputError:
        return None
    named_subband = file_subband(item.path)
    subband = data_subband(item.signature["channels"])
    if subband != named_subband:
        return f"name says {named_subband}, but its data are {subband or 'in no subband'}"
    named_s = mjd_seconds(named_time)
    half = config.INTEGRATION_S / 2
    if not item.t_start - half - TIME_SLACK_S <= named_s <= item.t_end + half + TIME_SLACK_S:
        data_start = utc_of(item.t_start - half)
        return f"name says {named_time:%Y-%m-%d %H:%M:%S}, but its data start at {data_start:%Y-%m-%d %H:%M:%S} UTC"
    return None


def select_inputs(ms_paths: list[str]) -> tuple[list[_Input], list[Dropped]]:
    """Inspect the inputs; keep those agreeing with the majority and with their names, in time order,
    without overlaps (an MS whose name disagrees with its data goes first, so the genuine one is kept)."""
    inspected, dropped = [], []
    for path in ms_paths:
        try:
            item = _inspect(path)
        except InputError as exc:
            dropped.append(Dropped(path=str(path), reason=str(exc)))
            continue
        misnamed = name_disagreement(item)
        if misnamed:
            dropped.append(Dropped(path=str(path), reason=misnamed))
        else:
            inspected.append(item)
    if not inspected:
        return [], dropped
    inspected.sort(key=lambda i: (i.t_start, i.path))
    keys = [json.dumps(i.signature) for i in inspected]
    counts = Counter(keys)
    reference = inspected[max(range(len(keys)), key=lambda k: (counts[keys[k]], -k))].signature  # majority, earliest
    used: list[_Input] = []
    for item in inspected:
        if item.signature != reference:
            dropped.append(Dropped(path=item.path, reason=_difference(item.signature, reference)))
        elif used and item.t_start <= used[-1].t_end:
            dropped.append(Dropped(path=item.path, reason=f"overlaps in time with {used[-1].path}"))
        else:
            used.append(item)
    return used, dropped


# --- writing ---------------------------------------------------------------------------------------
def _append(out, item: _Input, field_offset: int) -> None:
    """Append all rows of one input to the open output table, column by column, in row chunks."""
    from casacore import tables

    src = tables.table(item.path, ack=False)
    try:
        # A stable sort on TIME keeps each integration's baseline order.
        view = src if item.time_sorted else src.selectrows(np.argsort(src.getcol("TIME"), kind="stable"))
        start_out = out.nrows()
        out.addrows(item.nrows)
        columns = [c for c in out.colnames() if view.iscelldefined(c, 0)]
        for chunk in read_chunks(view, columns):
            for column in columns:
                values = chunk[column]
                if column == "FIELD_ID":
                    values = values + field_offset
                out.putcol(column, values, startrow=start_out + chunk.start, nrow=chunk.n)
        if view is not src:
            view.close()
    finally:
        src.close()


def _copy_subtables(first: str, out_path: Path, used: list[_Input]) -> list[int]:
    """Fill the output's sub-tables from the first input; FIELD gets every input's rows.

    Returns each input's offset into the output FIELD table.
    """
    with open_table(first) as src:
        subtables = [k for k in src.keywordnames() if isinstance(src.getkeyword(k), str)
                     and src.getkeyword(k).startswith("Table: ")]
    for name in subtables:
        if name == "FIELD":
            continue
        with open_table(Path(first) / name) as s, open_table(out_path / name, readonly=False) as o:
            if s.nrows():
                s.copyrows(o)
    offsets = []
    with open_table(out_path / "FIELD", readonly=False) as field_out:
        for item in used:
            offsets.append(field_out.nrows())
            with open_table(Path(item.path) / "FIELD") as s:
                s.copyrows(field_out)
    with open_table(out_path / "OBSERVATION", readonly=False) as obs:
        if obs.nrows():
            obs.putcell("TIME_RANGE", 0, np.array([used[0].t_start, used[-1].t_end]))
    return offsets


def column_wise_layout(dminfo: dict) -> dict:
    """``dminfo`` with each StandardStMan column in a storage manager of its own (64 KB buckets).

    Concat writes column by column; columns sharing one StandardStMan share its small buckets, which are
    then read and rewritten once per column (half of concat's CPU at full size). Values are unchanged."""
    out = {}
    for dm in dminfo.values():
        if dm["TYPE"] == "StandardStMan":
            for column in dm["COLUMNS"]:
                out[f"*{len(out) + 1}"] = {"TYPE": "StandardStMan", "NAME": f"SSM_{column}",
                                           "SPEC": {"BUCKETSIZE": SSM_BUCKET_BYTES}, "COLUMNS": [column]}
        else:
            out[f"*{len(out) + 1}"] = dm
    return out


def _build(used: list[_Input], out_ms: Path) -> int:
    from casacore import tables

    remove_stale_temps(out_ms)
    with atomic_path(out_ms) as partial:
        with open_table(used[0].path) as first:
            first.copy(str(partial), deep=True, copynorows=True,
                       dminfo=column_wise_layout(first.getdminfo())).close()
        offsets = _copy_subtables(used[0].path, partial, used)
        out = tables.table(str(partial), readonly=False, ack=False)
        try:
            for item, offset in zip(used, offsets):
                _append(out, item, offset)
            n_rows = out.nrows()
        finally:
            out.close()
    return n_rows


def _reusable(out_ms: Path, record: Path, inputs: list[str]) -> dict | None:
    """The completion record if ``out_ms`` is a complete, consistent concat of ``inputs``."""
    if not (record.is_file() and out_ms.is_dir()):
        return None
    try:
        done = json.loads(record.read_text())
    except json.JSONDecodeError:
        return None
    if done.get("inputs") != inputs:
        return None
    try:
        if msstate.interrupted_step(out_ms) is not None:
            return None
        with open_table(out_ms) as tab:
            if tab.nrows() != done.get("n_rows"):
                return None
    except InputError:
        return None
    return done


def concatenate_ms(ms_paths: list[str], out_ms: str | Path) -> Result:
    """Concatenate ``ms_paths`` (time-sorted) into ``out_ms``; reuse it if already complete.

    Raises InputError if no input is usable, naming every input and why it was dropped.
    """
    out_ms = Path(out_ms)
    record = out_ms.with_suffix(".json")
    inputs = sorted(os.path.abspath(p) for p in ms_paths)
    if not inputs:
        raise InputError(f"{out_ms}: no input MS given to concatenate")
    done = _reusable(out_ms, record, inputs)
    if done is not None:
        log(_logger, "reusing complete concat", ms=str(out_ms), n_rows=done["n_rows"])
        return Result(concat_ms=str(out_ms), record=str(record), n_inputs=len(inputs), used=done["used"],
                      dropped=[Dropped(**d) for d in done["dropped"]], n_rows=done["n_rows"], reused=True)
    record.unlink(missing_ok=True)
    used, dropped = select_inputs(inputs)
    for d in dropped:
        log(_logger, "dropping input MS", level=30, path=d.path, reason=d.reason)
    if not used:
        reasons = "; ".join(f"{Path(d.path).name}: {d.reason}" for d in dropped)
        raise InputError(f"{out_ms}: no valid input MS among {len(inputs)}: {reasons}")
    out_ms.parent.mkdir(parents=True, exist_ok=True)
    n_rows = _build(used, out_ms)
    result = Result(concat_ms=str(out_ms), record=str(record), n_inputs=len(inputs), used=[u.path for u in used],
                    dropped=dropped, n_rows=n_rows, reused=False)
    body = {"inputs": inputs, "used": result.used, "dropped": [d.model_dump() for d in dropped], "n_rows": n_rows,
            "time_range": [used[0].t_start, used[-1].t_end]}
    write_json(record, body)
    return result


def run(options: Options) -> Result:
    out_ms, _ = concat_paths(options.work_dir, options.subband)
    with step_timer("concat", options.work_dir, subband=options.subband):
        return concatenate_ms(options.ms_paths, out_ms)

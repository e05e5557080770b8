"""Small shared helpers for Measurement Sets: open, check, iterate row chunks, add a column.

Every step reads MS through these, so large columns are always streamed in row chunks
(``getcol(startrow, nrow)``) and memory does not grow with the MS.
"""
from __future__ import annotations

import ctypes
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .constants import CHUNK_BYTES, CORR_NAMES, LINEAR_CORR_TYPES
from .errors import InputError



def _casacore_tables():
    from casacore import tables  # imported late: dp3 must be imported after casacore

    return tables


def check_ms(path: str | Path) -> Path:
    """Return ``path`` if it is a readable MS directory, else raise InputError naming it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: Measurement Set does not exist")
    if not p.is_dir():
        raise InputError(f"{p}: not a Measurement Set (not a directory)")
    if not (p / "table.dat").is_file():
        raise InputError(f"{p}: not a Measurement Set (no table.dat)")
    for sub in ("ANTENNA", "SPECTRAL_WINDOW", "POLARIZATION", "DATA_DESCRIPTION", "FIELD"):
        if not (p / sub / "table.dat").is_file():
            raise InputError(f"{p}: not a Measurement Set (no {sub} sub-table)")
    return p


@contextmanager
def open_table(path: str | Path, readonly: bool = True):
    """Open a casacore table, turning casacore's errors into one naming the file."""
    tables = _casacore_tables()
    try:
        tab = tables.table(str(path), readonly=readonly, ack=False)
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot open table: {exc}") from exc
    try:
        yield tab
    finally:
        tab.close()


@contextmanager
def open_ms(path: str | Path, readonly: bool = True):
    check_ms(path)
    with open_table(path, readonly=readonly) as tab:
        yield tab


def require_columns(tab, path: str | Path, *names: str) -> None:
    """Raise InputError naming the MS and every column of ``names`` it lacks."""
    missing = [n for n in names if n not in tab.colnames()]
    if missing:
        raise InputError(f"{path}: no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} in this MS")


def row_chunks(nrows: int, row_bytes: int, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, int]]:
    """Yield (startrow, nrow) covering ``nrows`` so each chunk holds about ``chunk_bytes``."""
    step = max(1, chunk_bytes // max(1, row_bytes))
    for start in range(0, nrows, step):
        yield start, min(step, nrows - start)


def data_row_bytes(tab, column: str = "DATA") -> int:
    """Bytes of one row of a complex64 data column (shape nchan x ncorr)."""
    shape = tab.getcell(column, 0).shape if tab.nrows() else (1, 1)
    return int(np.prod(shape)) * 8


def ensure_column(tab, name: str, like: str = "DATA") -> bool:
    """Add column ``name`` shaped and stored like ``like`` if it is missing. Returns True if added."""
    if name in tab.colnames():
        return False
    tables = _casacore_tables()
    desc = tab.getcoldesc(like)
    desc["name"] = name
    desc.pop("comment", None)
    dminfo = {"TYPE": "StandardStMan", "NAME": f"{name}_stman", "SPEC": {}}
    like_dm = tab.getdminfo(like)
    cubes = like_dm.get("SPEC", {}).get("HYPERCUBES", {})
    if like_dm["TYPE"] in ("TiledColumnStMan", "TiledShapeStMan") and cubes:
        # Tiled like DATA: whole-row chunks read and write several times faster than StandardStMan.
        tile = next(iter(cubes.values()))["TileShape"]
        dminfo = {"TYPE": like_dm["TYPE"], "NAME": f"{name}_stman", "SPEC": {"DEFAULTTILESHAPE": tile}}
    tab.addcols(tables.maketabdesc(tables.makecoldesc(name, desc)), dminfo)
    reserve_tiles(tab, name)
    return True


_FALLOC_FL_KEEP_SIZE = 1  # linux/falloc.h: allocate blocks without changing the file's size


def reserve_tiles(tab, column: str) -> bool:
    """Allocate the disk blocks of a new, still empty TiledColumnStMan column in one call, before it is
    written. Returns True if they were allocated.

    Written tile by tile, a new file gets its blocks a page at a time; reserved at once (``fallocate``
    keeping the file's size, so casacore sees the same empty file), the same writes are faster: on this
    machine's ext4, bench/apply_floor.py's casacore I/O loop (95 MB of CORRECTED_DATA written) took
    0.063-0.064 s with it and 0.070-0.074 s without (2026-12-06). A system or file system without
    ``fallocate`` is simply written as before."""
    info = tab.getdminfo(column)
    cubes = list(info.get("SPEC", {}).get("HYPERCUBES", {}).values())
    path = Path(tab.name()) / f"table.f{info['SEQNR']}_TSM0"
    if info["TYPE"] != "TiledColumnStMan" or len(cubes) != 1 or not path.is_file() or path.stat().st_size:
        return False
    cube = cubes[0]
    tiles = np.prod(-(-np.asarray(cube["CubeShape"], np.int64) // np.asarray(cube["TileShape"], np.int64)))
    size = int(tiles) * int(cube["BucketSize"])
    fallocate = getattr(ctypes.CDLL(None), "fallocate", None)  # Linux only
    if fallocate is None:
        return False
    fd = os.open(path, os.O_WRONLY)
    try:
        return fallocate(fd, _FALLOC_FL_KEEP_SIZE, ctypes.c_long(0), ctypes.c_long(size)) == 0
    finally:
        os.close(fd)


def spectral_windows(ms: str | Path) -> list[np.ndarray]:
    """CHAN_FREQ (Hz) of every spectral window, by window id."""
    with open_table(Path(ms) / "SPECTRAL_WINDOW") as spw:
        return [np.asarray(spw.getcell("CHAN_FREQ", i), dtype=float) for i in range(spw.nrows())]


def antenna_positions(ms: str | Path) -> tuple[list[str], np.ndarray]:
    """Antenna names and ITRF positions (m), in the MS's (correlator) row order."""
    with open_table(Path(ms) / "ANTENNA") as ant:
        return list(ant.getcol("NAME")), np.asarray(ant.getcol("POSITION"), dtype=float)


def _corr_types(ms: str | Path) -> list[list[int]]:
    with open_table(Path(ms) / "POLARIZATION") as pol:
        return [np.asarray(pol.getcell("CORR_TYPE", i)).tolist() for i in range(pol.nrows())]


def _describe(corr: list[int]) -> str:
    return ",".join(CORR_NAMES.get(c, str(c)) for c in corr) + f" (CORR_TYPE {corr})"


def check_linear_correlations(ms: str | Path) -> None:
    """Raise InputError unless every polarisation setup of ``ms`` is XX, XY, YX, YY in that order."""
    for corr in _corr_types(ms):
        if corr != LINEAR_CORR_TYPES:
            raise InputError(f"{ms}: correlations {_describe(corr)} are not XX,XY,YX,YY (CORR_TYPE 9-12 in order)")


def linear_correlation_index(ms: str | Path) -> np.ndarray:
    """Where XX, XY, YX, YY sit on the MS's correlation axis, found by CORR_TYPE (pyuvdata and some
    correlators store XX, YY, XY, YX). ``data[..., index]`` puts any such MS in XX, XY, YX, YY order.
    InputError unless the MS has one polarisation setup holding exactly the four linear products."""
    setups = _corr_types(ms)
    if len(setups) != 1 or sorted(setups[0]) != LINEAR_CORR_TYPES:
        raise InputError(f"{ms}: correlations {'; '.join(map(_describe, setups)) or 'none'} are not the four "
                         "linear products XX, XY, YX, YY (CORR_TYPE 9-12) in one polarisation setup")
    return np.array([setups[0].index(c) for c in LINEAR_CORR_TYPES])


def ddid_to_spw(ms: str | Path) -> np.ndarray:
    with open_table(Path(ms) / "DATA_DESCRIPTION") as dd:
        return np.asarray(dd.getcol("SPECTRAL_WINDOW_ID"), dtype=int)


# Below this mean run length a Python loop over runs costs more than gathering per row.
MIN_MEAN_RUN = 8


def baseline_runs(a1: np.ndarray, a2: np.ndarray) -> np.ndarray | None:
    """Bounds (start rows plus the end) of the runs in which ``a1`` is fixed and ``a2`` counts up by one,
    or None if the runs are too short to be worth using (mean below ``MIN_MEAN_RUN`` rows).

    MS rows are written in such runs (p-p, p-(p+1), ...), and within one a row's per-antenna values
    are a slice of a per-antenna array: numpy can multiply slices instead of gathering every row.
    """
    breaks = np.flatnonzero((a1[1:] != a1[:-1]) | (a2[1:] != a2[:-1] + 1)) + 1
    bounds = np.concatenate(([0], breaks, [a1.size]))
    return bounds if a1.size >= MIN_MEAN_RUN * (bounds.size - 1) else None

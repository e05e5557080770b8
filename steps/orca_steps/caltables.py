"""Read and write CASA calibration tables (``B Jones`` bandpass, ``Xf Jones`` cross-hand phase).

The tables are laid out as CASA's own ``NewCalTable`` (checked against tables made by casatools'
calibrater): one row per antenna and spectral window, ``CPARAM`` shaped (nchan, npar) and sub-tables
ANTENNA, FIELD, SPECTRAL_WINDOW, OBSERVATION, HISTORY. A table holds the *corrupting* Jones matrix
G (V_obs = G_p V_true G_q^H); applying a table divides by it.

- ``B Jones``: npar = 2, the diagonal [g_X, g_Y] per channel.
- ``Xf Jones``: npar = 1, the first diagonal element p = exp(i phi); CASA's XJones makes the Jones
  matrix diag(p, 1), so only the cross hands change.

``read_caltable`` returns both kinds in one form, the two diagonal elements per antenna and channel.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .config import TELESCOPE_NAME
from .errors import InputError
from .fileio import atomic_path

# MJD seconds of 2000-01-01T00:00 UTC: a neutral solution time for tables valid at any time.
DEFAULT_TIME_S = 51544.0 * 86400.0
VISCAL = {"B": "B Jones", "Xf": "Xf Jones"}
NPAR = {"B": 2, "Xf": 1}


@dataclass
class CalWindow:
    """One spectral window of a cal table: channel grid and diagonal Jones per antenna."""
    spw_id: int
    freqs: np.ndarray       # (nchan,) Hz, channel centres
    widths: np.ndarray      # (nchan,) Hz
    gains: np.ndarray       # (n_ant, nchan, 2) complex: diagonal [J_XX, J_YY] of the corrupting Jones
    flags: np.ndarray       # (n_ant, nchan, 2) bool: True = no valid solution

    @property
    def lo(self) -> float:
        return float(np.min(self.freqs - np.abs(self.widths) / 2))

    @property
    def hi(self) -> float:
        return float(np.max(self.freqs + np.abs(self.widths) / 2))


@dataclass
class CalTable:
    path: Path
    kind: str                           # 'B' or 'Xf'
    antenna_names: list[str]
    windows: list[CalWindow] = field(default_factory=list)


# --- writing ----------------------------------------------------------------------------------
def _tables():
    from casacore import tables  # imported late: dp3 must be imported after casacore

    return tables


def _as_windows(freqs_hz, *arrays):
    """Normalise one window (1-D ``freqs_hz``) or several (a list of 1-D arrays) to lists."""
    several = isinstance(freqs_hz, (list, tuple)) and len(freqs_hz) > 0 and np.ndim(freqs_hz[0]) == 1
    if not several:
        return [np.asarray(freqs_hz, dtype=float)], [[a] for a in arrays]
    return ([np.asarray(f, dtype=float) for f in freqs_hz],
            [[None] * len(freqs_hz) if a is None else list(a) for a in arrays])


def _channel_widths(freqs: np.ndarray) -> np.ndarray:
    if freqs.size < 2:
        raise InputError("a cal table window needs at least 2 channels to define its channel width")
    return np.gradient(freqs)


def _write_subtables(tab, path: Path, freqs_list, antenna_names, antenna_positions, time_s):
    tables = _tables()
    n_ant = len(antenna_names)
    subs = {}
    for name in ("OBSERVATION", "ANTENNA", "FIELD", "SPECTRAL_WINDOW", "HISTORY"):
        subs[name] = tables.default_ms_subtable(name, str(path / name))
    ant = subs["ANTENNA"]
    ant.addrows(n_ant)
    ant.putcol("NAME", list(antenna_names))
    ant.putcol("STATION", list(antenna_names))
    ant.putcol("TYPE", ["GROUND-BASED"] * n_ant)
    ant.putcol("MOUNT", ["X-Y"] * n_ant)
    ant.putcol("DISH_DIAMETER", np.full(n_ant, 2.0))
    pos = np.zeros((n_ant, 3)) if antenna_positions is None else np.asarray(antenna_positions, float)
    ant.putcol("POSITION", pos)
    ant.putcol("OFFSET", np.zeros((n_ant, 3)))
    ant.putcol("FLAG_ROW", np.zeros(n_ant, bool))

    fld = subs["FIELD"]
    fld.addrows(1)
    fld.putcol("NAME", ["calibrator"])
    fld.putcol("CODE", [""])
    fld.putcol("TIME", np.array([time_s]))
    fld.putcol("NUM_POLY", np.array([0], dtype=np.int32))
    for col in ("DELAY_DIR", "PHASE_DIR", "REFERENCE_DIR"):
        fld.putcol(col, np.zeros((1, 1, 2)))
    fld.putcol("SOURCE_ID", np.array([-1], dtype=np.int32))
    fld.putcol("FLAG_ROW", np.zeros(1, bool))

    spw = subs["SPECTRAL_WINDOW"]
    spw.addrows(len(freqs_list))
    for i, freqs in enumerate(freqs_list):
        widths = _channel_widths(freqs)
        spw.putcell("NAME", i, f"spw{i}")
        spw.putcell("NUM_CHAN", i, int(freqs.size))
        spw.putcell("CHAN_FREQ", i, freqs)
        spw.putcell("CHAN_WIDTH", i, widths)
        spw.putcell("EFFECTIVE_BW", i, np.abs(widths))
        spw.putcell("RESOLUTION", i, np.abs(widths))
        spw.putcell("REF_FREQUENCY", i, float(freqs[0]))
        spw.putcell("TOTAL_BANDWIDTH", i, float(np.abs(widths).sum()))
        spw.putcell("MEAS_FREQ_REF", i, 5)  # TOPO
        spw.putcell("NET_SIDEBAND", i, 1)
        spw.putcell("FREQ_GROUP", i, 0)
        spw.putcell("FREQ_GROUP_NAME", i, "")
        spw.putcell("IF_CONV_CHAIN", i, 0)
        spw.putcell("FLAG_ROW", i, False)

    obs = subs["OBSERVATION"]
    obs.addrows(1)
    obs.putcol("TELESCOPE_NAME", [TELESCOPE_NAME])
    obs.putcol("TIME_RANGE", np.array([[time_s, time_s]]))
    obs.putcol("OBSERVER", ["orca-argo"])
    obs.putcol("PROJECT", [""])
    obs.putcol("SCHEDULE_TYPE", [""])
    obs.putcol("RELEASE_DATE", np.array([0.0]))
    obs.putcol("FLAG_ROW", np.zeros(1, bool))

    for name, sub in subs.items():
        sub.flush()
        tab.putkeyword(name, sub)
        sub.close()


def _main_desc():
    tables = _tables()
    tkw = {"QuantumUnits": ["s"], "MEASINFO": {"type": "epoch", "Ref": "UTC"}}
    cols = [
        tables.makescacoldesc("TIME", 0.0, keywords=tkw),
        tables.makescacoldesc("FIELD_ID", 0),
        tables.makescacoldesc("SPECTRAL_WINDOW_ID", 0),
        tables.makescacoldesc("ANTENNA1", 0),
        tables.makescacoldesc("ANTENNA2", 0),
        tables.makescacoldesc("INTERVAL", 0.0, keywords={"QuantumUnits": ["s"]}),
        tables.makescacoldesc("SCAN_NUMBER", 0),
        tables.makescacoldesc("OBSERVATION_ID", 0),
        tables.makearrcoldesc("CPARAM", 0j, ndim=-1, valuetype="complex"),
        tables.makearrcoldesc("PARAMERR", 0.0, ndim=-1, valuetype="float"),
        tables.makearrcoldesc("FLAG", False, ndim=-1),
        tables.makearrcoldesc("SNR", 0.0, ndim=-1, valuetype="float"),
        tables.makearrcoldesc("WEIGHT", 0.0, ndim=-1, valuetype="float"),
    ]
    return tables.maketabdesc(cols)


def _write_caltable(path, kind, params_list, flags_list, freqs_list, antenna_names,
                    antenna_positions, time_s, ms_name, overwrite) -> Path:
    """Write the table to a temporary name beside ``path``, then rename it into place."""
    tables = _tables()
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: calibration table already exists (pass overwrite=True to replace it)")
    n_ant = len(antenna_names)
    npar = NPAR[kind]
    for s, (params, freqs) in enumerate(zip(params_list, freqs_list)):
        if params.shape != (n_ant, freqs.size, npar):
            raise InputError(f"{path}: window {s} parameters have shape {params.shape}, "
                             f"expected (n_ant={n_ant}, n_chan={freqs.size}, {npar})")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tab = tables.table(str(tmp), _main_desc(), nrow=0, ack=False)
        tab.putinfo({"type": "Calibration", "subType": VISCAL[kind], "readme": ""})
        tab.putkeywords({"ParType": "Complex", "MSName": ms_name, "VisCal": VISCAL[kind],
                         "PolBasis": "unknown", "CASA_Version": "orca-argo"})
        for s, (params, flags, freqs) in enumerate(zip(params_list, flags_list, freqs_list)):
            start = tab.nrows()
            tab.addrows(n_ant)
            rows = dict(startrow=start, nrow=n_ant)
            tab.putcol("TIME", np.full(n_ant, float(time_s)), **rows)
            tab.putcol("FIELD_ID", np.zeros(n_ant, np.int32), **rows)
            tab.putcol("SPECTRAL_WINDOW_ID", np.full(n_ant, s, np.int32), **rows)
            tab.putcol("ANTENNA1", np.arange(n_ant, dtype=np.int32), **rows)
            tab.putcol("ANTENNA2", np.full(n_ant, -1, np.int32), **rows)
            tab.putcol("INTERVAL", np.zeros(n_ant), **rows)
            tab.putcol("SCAN_NUMBER", np.full(n_ant, -1, np.int32), **rows)
            tab.putcol("OBSERVATION_ID", np.zeros(n_ant, np.int32), **rows)
            tab.putcol("CPARAM", params.astype(np.complex64), **rows)
            tab.putcol("PARAMERR", np.zeros(params.shape, np.float32), **rows)
            tab.putcol("FLAG", flags.astype(bool), **rows)
            tab.putcol("SNR", np.where(flags, 0.0, 100.0).astype(np.float32), **rows)
            tab.putcol("WEIGHT", np.ones(params.shape, np.float32), **rows)
        _write_subtables(tab, tmp, freqs_list, antenna_names, antenna_positions, time_s)
        tab.close()
    return path


def write_bandpass_table(path, gains, freqs_hz, antenna_names, flags=None, time_s: float = DEFAULT_TIME_S,
                         overwrite: bool = False, antenna_positions=None, ms_name: str = "") -> Path:
    """Write a CASA ``B Jones`` table holding the corrupting bandpass ``gains`` [g_X, g_Y].

    ``gains`` is complex (n_ant, n_chan, 2) with ``freqs_hz`` (n_chan,) for one window, or lists of
    both for several windows; ``flags`` (same shape, True = bad) defaults to none flagged.
    """
    freqs_list, (gains_list, flags_list) = _as_windows(freqs_hz, gains, flags)
    gains_list = [np.asarray(g, dtype=complex) for g in gains_list]
    flags_list = [np.zeros(g.shape, bool) if f is None else np.asarray(f, bool)
                  for g, f in zip(gains_list, flags_list)]
    return _write_caltable(path, "B", gains_list, flags_list, freqs_list, list(antenna_names),
                           antenna_positions, time_s, ms_name, overwrite)


def write_xyphase_table(path, phase_rad, freqs_hz, antenna_names, time_s: float = DEFAULT_TIME_S,
                        overwrite: bool = False, flags=None, antenna_positions=None, ms_name: str = "") -> Path:
    """Write a CASA ``Xf Jones`` table: cross-hand phase ``phase_rad`` per channel, same for all antennas.

    The Jones matrix is diag(exp(i phi), 1). ``phase_rad`` is (n_chan,) for one window or a list.
    ``flags`` (n_chan,) per window, True = no solution.
    """
    n_ant = len(antenna_names)
    freqs_list, (phase_list, flags_list) = _as_windows(freqs_hz, phase_rad, flags)
    params_list, pflags = [], []
    for phase, flg in zip(phase_list, flags_list):
        phase = np.broadcast_to(np.asarray(phase, dtype=float), (np.size(phase),))
        params_list.append(np.broadcast_to(np.exp(1j * phase)[None, :, None], (n_ant, phase.size, 1)).copy())
        flg = np.zeros(phase.size, bool) if flg is None else np.asarray(flg, bool)
        pflags.append(np.broadcast_to(flg[None, :, None], (n_ant, phase.size, 1)).copy())
    return _write_caltable(path, "Xf", params_list, pflags, freqs_list, list(antenna_names),
                           antenna_positions, time_s, ms_name, overwrite)


# --- reading ----------------------------------------------------------------------------------
def read_caltable(path) -> CalTable:
    """Read a CASA B or Xf table into diagonal Jones per window and antenna; errors name the file."""
    tables = _tables()
    path = Path(path)
    if not (path / "table.dat").is_file():
        raise InputError(f"{path}: calibration table does not exist or is not a casacore table")
    try:
        tab = tables.table(str(path), ack=False)
    except RuntimeError as exc:
        raise InputError(f"{path}: cannot open calibration table: {exc}") from exc
    try:
        viscal = tab.getkeywords().get("VisCal") or tab.info().get("subType", "")
        kinds = {v: k for k, v in VISCAL.items()}
        if viscal not in kinds:
            raise InputError(f"{path}: calibration type {viscal!r} is not supported (expected 'B Jones' or 'Xf Jones')")
        kind = kinds[viscal]
        if tab.getkeywords().get("ParType", "Complex") != "Complex" or "CPARAM" not in tab.colnames():
            raise InputError(f"{path}: {viscal} table has no complex CPARAM column")
        for sub in ("ANTENNA", "SPECTRAL_WINDOW"):
            if not (path / sub / "table.dat").is_file():
                raise InputError(f"{path}: calibration table has no {sub} sub-table")
        with tables.table(str(path / "ANTENNA"), ack=False) as ant:
            names = list(ant.getcol("NAME")) if ant.nrows() else []
        with tables.table(str(path / "SPECTRAL_WINDOW"), ack=False) as spw:
            spw_freqs = [np.asarray(spw.getcell("CHAN_FREQ", i), float) for i in range(spw.nrows())]
            spw_widths = [np.asarray(spw.getcell("CHAN_WIDTH", i), float) for i in range(spw.nrows())]
        spw_ids = tab.getcol("SPECTRAL_WINDOW_ID") if tab.nrows() else np.zeros(0, int)
        windows = []
        for s in sorted(set(spw_ids.tolist())):  # not np.unique: its first call imports numpy.ma (~80 ms)
            if s >= len(spw_freqs):
                raise InputError(f"{path}: rows refer to spectral window {s}, which its SPECTRAL_WINDOW table lacks")
            windows.append(_read_window(tab, path, kind, s, spw_freqs[s], spw_widths[s], len(names)))
    finally:
        tab.close()
    if not windows:
        raise InputError(f"{path}: calibration table has no solutions")
    return CalTable(path=path, kind=kind, antenna_names=names, windows=windows)


def _rows(tab, column: str, rows: np.ndarray) -> np.ndarray:
    """``column`` of ``rows``: one read when they are contiguous (as CASA writes them), else cell by cell."""
    if rows[-1] - rows[0] + 1 == rows.size:
        return tab.getcol(column, int(rows[0]), int(rows.size))
    return np.stack([tab.getcell(column, int(r)) for r in rows])


def _read_window(tab, path, kind, spw_id, freqs, widths, n_ant) -> CalWindow:
    """One window's solutions, selected with numpy (a TaQL query costs more than these small tables)."""
    rows = np.flatnonzero(tab.getcol("SPECTRAL_WINDOW_ID") == spw_id)
    ant1 = tab.getcol("ANTENNA1")[rows]
    if len(set(ant1.tolist())) != ant1.size:
        times = tab.getcol("TIME")[rows]
        raise InputError(f"{path}: window {spw_id} holds several solution times per antenna "
                         f"({np.unique(times).size} times); only one is supported")
    par = _rows(tab, "CPARAM", rows)
    flg = _rows(tab, "FLAG", rows)
    nchan = freqs.size
    if par.shape[1] != nchan:
        raise InputError(f"{path}: window {spw_id} has {par.shape[1]} solution channels but {nchan} frequencies")
    npar = par.shape[2]
    if npar != NPAR[kind]:
        raise InputError(f"{path}: {VISCAL[kind]} rows have {npar} parameters, expected {NPAR[kind]}")
    if np.any((ant1 < 0) | (ant1 >= n_ant)):
        raise InputError(f"{path}: ANTENNA1 out of range of its ANTENNA table ({n_ant} antennas)")
    gains = np.ones((n_ant, nchan, 2), np.complex128)
    flags = np.ones((n_ant, nchan, 2), bool)  # antennas without a row have no solution
    if kind == "B":
        gains[ant1] = par
        flags[ant1] = flg
    else:
        gains[ant1, :, 0] = par[:, :, 0]
        flags[ant1] = flg[:, :, :1]
    return CalWindow(spw_id=spw_id, freqs=freqs, widths=widths, gains=gains, flags=flags)

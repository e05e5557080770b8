"""Write a real MeasurementSet (MS v2) with python-casacore, with the metadata CASA and WSClean expect."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import TELESCOPE_NAME
from .geometry import site_itrf

# The orders correlators write: the MS default, and pyuvdata's (and some correlators') XX, YY, XY, YX.
CORR_ORDERS = {"XX,XY,YX,YY": [9, 10, 11, 12], "XX,YY,XY,YX": [9, 12, 10, 11]}
RECEPTORS = {9: [0, 0], 10: [0, 1], 11: [1, 0], 12: [1, 1]}  # CORR_TYPE -> CORR_PRODUCT (X = 0, Y = 1)


def create_ms(path: str | Path, names: list[str], itrf: np.ndarray, freqs: np.ndarray, spw_name: str,
              phase_dir: tuple[float, float], time_s: float, nrows: int, extra_columns=("",),
              corr_order: str = "XX,XY,YX,YY") -> None:
    """Create an empty MS of ``nrows`` rows with every sub-table filled for one field and one window."""
    from casacore import tables as ct

    nchan = freqs.size
    columns = [ct.makearrcoldesc("DATA", 0j, valuetype="complex", shape=[nchan, 4],
                                 datamanagertype="TiledColumnStMan", datamanagergroup="TiledData"),
               ct.makearrcoldesc("FLAG", False, valuetype="boolean", shape=[nchan, 4],
                                 datamanagertype="TiledColumnStMan", datamanagergroup="TiledFlag")]
    for name in extra_columns:
        if name:
            columns.append(ct.makearrcoldesc(name, 0j, valuetype="complex", shape=[nchan, 4],
                                             datamanagertype="TiledColumnStMan", datamanagergroup=f"Tiled{name}"))
    ms = ct.default_ms(str(path), ct.maketabdesc(columns))
    ms.addrows(nrows)
    ms.close()

    width = np.full(nchan, np.median(np.diff(freqs)) if nchan > 1 else 95.7e3)
    _fill(Path(path) / "SPECTRAL_WINDOW", 1, CHAN_FREQ=[freqs], CHAN_WIDTH=[width], EFFECTIVE_BW=[width],
          RESOLUTION=[width], NUM_CHAN=[nchan], REF_FREQUENCY=[float(freqs[0])], TOTAL_BANDWIDTH=[float(width.sum())],
          MEAS_FREQ_REF=[5], NAME=[spw_name], NET_SIDEBAND=[1], FREQ_GROUP_NAME=[spw_name])  # 5 = TOPO
    corr_types = CORR_ORDERS[corr_order]
    _fill(Path(path) / "POLARIZATION", 1, NUM_CORR=[4], CORR_TYPE=[corr_types],
          CORR_PRODUCT=[[RECEPTORS[c] for c in corr_types]])
    _fill(Path(path) / "DATA_DESCRIPTION", 1, SPECTRAL_WINDOW_ID=[0], POLARIZATION_ID=[0])
    n = len(names)
    _fill(Path(path) / "ANTENNA", n, NAME=names, STATION=names, TYPE=["GROUND-BASED"] * n,
          MOUNT=["X-Y"] * n, POSITION=itrf, DISH_DIAMETER=[2.0] * n, OFFSET=np.zeros((n, 3)))
    _fill(Path(path) / "FEED", n, ANTENNA_ID=np.arange(n), FEED_ID=[0] * n, SPECTRAL_WINDOW_ID=[-1] * n,
          TIME=[time_s] * n, NUM_RECEPTORS=[2] * n, BEAM_ID=[-1] * n,
          POLARIZATION_TYPE=[["X", "Y"]] * n, RECEPTOR_ANGLE=[[0.0, np.pi / 2]] * n,
          POL_RESPONSE=[np.eye(2, dtype=complex)] * n, BEAM_OFFSET=[np.zeros((2, 2))] * n, POSITION=np.zeros((n, 3)))
    direction = np.array([[phase_dir[0], phase_dir[1]]])
    _fill(Path(path) / "FIELD", 1, NAME=["zenith"], CODE=[""], TIME=[time_s], NUM_POLY=[0],
          DELAY_DIR=[direction], PHASE_DIR=[direction], REFERENCE_DIR=[direction], SOURCE_ID=[-1])
    _fill(Path(path) / "OBSERVATION", 1, TELESCOPE_NAME=[TELESCOPE_NAME], OBSERVER=["orca-sim"],
          PROJECT=["orca-argo simulation"], TIME_RANGE=[[time_s - 5.0, time_s + 5.0]], RELEASE_DATE=[0.0])
    _set_array_position(Path(path) / "OBSERVATION")


def _fill(path: Path, nrows: int, **columns) -> None:
    from casacore import tables as ct

    with ct.table(str(path), readonly=False, ack=False) as tab:
        tab.addrows(nrows - tab.nrows())
        for name, values in columns.items():
            tab.putcol(name, np.asarray(values) if not isinstance(values[0], str) else list(values))


def _set_array_position(obs_table: Path) -> None:
    """Record the array centre so tools without an observatory table for OVRO-LWA can find it."""
    from casacore import tables as ct

    with ct.table(str(obs_table), readonly=False, ack=False) as tab:
        tab.putcolkeyword("TELESCOPE_NAME", "ARRAY_POSITION", list(map(float, site_itrf())))

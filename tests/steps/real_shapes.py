"""Small MS in the shapes other software writes (pyuvdata, LWA-SV, MWA, PAPER), built with python-casacore.

``reshape_ms`` rewrites a simulated MS the way such writers store it: data columns in TiledShapeStMan
with no fixed cell shape (variable-shape columns), a WEIGHT_SPECTRUM column, TIME_CENTROID = 0,
a 109-channel window cut from the 24 kHz native grid, and amplitudes in correlator units (a scale,
not Jy). The visibilities and every sub-table are the simulated ones, so the truth is still known.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from casacore import tables

CORRELATOR_UNITS_PER_JY = 37.5  # an arbitrary correlator scale: steps must not assume Jy
WINDOW_CHANNELS = 109
DATA_COLUMNS = ("DATA", "FLAG", "WEIGHT_SPECTRUM")


def _variable_shape_desc(name: str, value, valuetype: str) -> dict:
    return tables.makearrcoldesc(name, value, ndim=2, valuetype=valuetype, datamanagertype="TiledShapeStMan",
                                 datamanagergroup=f"{name}_tsm")


def reshape_ms(src: Path, dest: Path, first_channel: int = 20, n_channels: int = WINDOW_CHANNELS) -> Path:
    """Copy ``src`` into ``dest`` in the real shapes above (channels first_channel .. + n_channels)."""
    window = slice(first_channel, first_channel + n_channels)
    with tables.table(str(src), ack=False) as tab:
        keep = [c for c in tab.colnames() if c not in DATA_COLUMNS + ("MODEL_DATA", "CORRECTED_DATA")]
        cols = {c: tab.getcol(c) for c in ("DATA", "FLAG")}
        tab.select(", ".join(keep)).copy(str(dest), deep=True, valuecopy=True).close()
    with tables.table(str(dest), readonly=False, ack=False) as out:
        descs = [_variable_shape_desc("DATA", 0j, "complex"), _variable_shape_desc("FLAG", False, "boolean"),
                 _variable_shape_desc("WEIGHT_SPECTRUM", 0.0, "float")]
        for desc in descs:
            out.addcols(tables.maketabdesc(desc), {"TYPE": "TiledShapeStMan", "NAME": f"{desc['name']}_tsm",
                                                   "SPEC": {"DEFAULTTILESHAPE": [4, 16, 64]}})
        data = cols["DATA"][:, window] * CORRELATOR_UNITS_PER_JY
        out.putcol("DATA", data.astype(np.complex64))
        out.putcol("FLAG", cols["FLAG"][:, window])
        out.putcol("WEIGHT_SPECTRUM", np.ones(data.shape, np.float32))
        out.putcol("TIME_CENTROID", np.zeros(out.nrows()))
    with tables.table(str(dest / "SPECTRAL_WINDOW"), readonly=False, ack=False) as spw:
        for column in ("CHAN_FREQ", "CHAN_WIDTH", "EFFECTIVE_BW", "RESOLUTION"):
            spw.putcell(column, 0, spw.getcell(column, 0)[window])
        spw.putcell("NUM_CHAN", 0, n_channels)
        spw.putcell("REF_FREQUENCY", 0, float(spw.getcell("CHAN_FREQ", 0)[0]))
        spw.putcell("TOTAL_BANDWIDTH", 0, float(np.sum(spw.getcell("CHAN_WIDTH", 0))))
    return dest

"""Reading MS columns in row chunks into reused numpy buffers.

``getcolnp`` into a preallocated buffer is several times faster than ``getcol``, which allocates (and
page-faults) a fresh array for every chunk; the steps that stream whole columns use this.
"""
from __future__ import annotations

import numpy as np

# casacore column data types that getcolnp can fill
NUMPY_TYPES = {"boolean": np.bool_, "int": np.int32, "uint": np.uint32, "short": np.int16, "float": np.float32,
               "double": np.float64, "complex": np.complex64, "dcomplex": np.complex128}


def max_row_bytes(tab, columns: list[str] | None = None) -> int:
    """Bytes of the widest row cell among ``columns`` (default: every defined column)."""
    widest = 8
    for column in columns or tab.colnames():
        if tab.nrows() and tab.iscelldefined(column, 0):
            widest = max(widest, np.asarray(tab.getcell(column, 0)).nbytes)
    return widest


class ChunkReader:
    """Reads row chunks of one column of an open table into one reused buffer."""

    def __init__(self, tab, column: str, rows: int):
        self.tab, self.column = tab, column
        dtype = NUMPY_TYPES.get(tab.coldatatype(column))
        shape = np.asarray(tab.getcell(column, 0)).shape
        self.buffer = np.empty((rows, *shape), dtype=dtype) if dtype is not None else None

    def read(self, start: int, n: int) -> np.ndarray:
        """Rows start..start+n; the array is the reused buffer (valid until the next read)."""
        if self.buffer is None:  # strings and other types: plain getcol
            return self.tab.getcol(self.column, startrow=start, nrow=n)
        out = self.buffer[:n]
        self.tab.getcolnp(self.column, out, startrow=start, nrow=n)
        return out

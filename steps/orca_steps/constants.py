"""Constants every step shares, each stated once: physics, the MS time scale, correlation codes, how
much of a column a step holds in memory. (The simulator keeps its own copies: it must not import the
code it checks.)
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

C_M_S = 299792458.0  # speed of light in vacuum (m/s)
SIDEREAL_RATE = 1.00273790935  # sidereal seconds per solar (UT1) second

# The MS TIME column (and every time_s here) is MJD in seconds, UTC.
MJD_EPOCH = datetime(1858, 11, 17, tzinfo=timezone.utc)
MJD_UNIX_OFFSET_S = (datetime(1970, 1, 1, tzinfo=timezone.utc) - MJD_EPOCH).total_seconds()  # 3506716800

# CORR_TYPE codes (casacore Stokes enum) of linear feeds, in the order every step computes in.
CORR_NAMES = {9: "XX", 10: "XY", 11: "YX", 12: "YY"}
LINEAR_CORR_TYPES = list(CORR_NAMES)
STOKES_CODES = {"I": 1, "Q": 2, "U": 3, "V": 4}  # FITS STOKES axis values

MIB = 2**20
CHUNK_BYTES = 64 * MIB  # default rows per chunk: about this many bytes of the columns a step reads


def utc_of(time_s: float) -> datetime:
    """UTC datetime of an MJD-seconds time."""
    return MJD_EPOCH + timedelta(seconds=float(time_s))


def mjd_seconds(when: datetime) -> float:
    """MJD seconds of a datetime (naive datetimes are taken as UTC)."""
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp() + MJD_UNIX_OFFSET_S


def isot(time_s: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS.sss`` (UTC, to the millisecond) of an MJD-seconds time, as FITS DATE-* and
    astropy's ``isot`` write it."""
    return (MJD_EPOCH + timedelta(milliseconds=round(float(time_s) * 1000))).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]

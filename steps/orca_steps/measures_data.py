"""Current leap seconds for casacore: rebuild its TAI_UTC table from astropy-iers-data.

casacore logs SEVERE "Leap second table TAI_UTC seems out-of-date" whenever its table's VS_DATE is
more than 180 days before today. The table inside the python-casacore wheel ages with the wheel, and
Debian 12's casacore-data-tai-utc is built from tzdata 2025b (VS_DATE 2025-07-07). PyPI's
astropy-iers-data is released every few weeks with IERS Bulletin C's leap-second list, so set-up
(`make venv`, the image build) rewrites the wheel's TAI_UTC from it: VS_DATE is that release's date.
Every casacore user here (python-casacore in-process, and Debian's WSClean, AOFlagger and taql through
tools.tool_env) reads the wheel's measures directory, so one table serves them all.

    python -m orca_steps.measures_data     # prints what it wrote
"""
from __future__ import annotations

import re
from datetime import date
from importlib.metadata import version
from pathlib import Path

import numpy as np

from .fileio import atomic_path

TABLE = "TAI_UTC"
PRE_1972_MJD = 41317.0  # before 1972, TAI-UTC drifted (rate terms): those rows are kept as casacore has them


def iers_leap_seconds() -> tuple[Path, np.ndarray, np.ndarray]:
    """astropy-iers-data's Leap_Second.dat: (path, MJD of each step, TAI-UTC after it in s)."""
    import astropy_iers_data

    path = Path(astropy_iers_data.__file__).parent / "data" / "Leap_Second.dat"
    rows = [line.split() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    mjd = np.array([float(r[0]) for r in rows])
    tai_utc = np.array([float(r[4]) for r in rows])
    return path, mjd, tai_utc


def release_date() -> date:
    """The date of the installed astropy-iers-data release (its version is 0.YYYY.MM.DD...)."""
    match = re.match(r"0\.(\d{4})\.(\d{1,2})\.(\d{1,2})", version("astropy-iers-data"))
    if not match:
        raise RuntimeError(f"astropy-iers-data version {version('astropy-iers-data')} does not carry a date")
    return date(*map(int, match.groups()))


def wheel_table() -> Path:
    import casacore

    return Path(casacore.__file__).parent / "data" / "geodetic" / TABLE


def rebuild(target: Path | None = None) -> dict:
    """Rewrite TAI_UTC (default: the wheel's) with the IERS list; atomic: built aside, then swapped in."""
    from casacore import tables

    target = target or wheel_table()
    source, mjd, tai_utc = iers_leap_seconds()
    stamp = release_date().strftime("%Y/%m/%d/00:00")
    with atomic_path(target) as new:
        old = tables.table(str(target), ack=False)
        keep = old.query(f"MJD < {PRE_1972_MJD}", sortlist="MJD").copy(str(new), deep=True)
        keep.close()
        old.close()
        t = tables.table(str(new), readonly=False, ack=False)
        start = t.nrows()
        t.addrows(len(mjd))
        t.putcol("MJD", mjd, startrow=start)
        t.putcol("dUTC", tai_utc, startrow=start)
        t.putcol("Offset", np.full(len(mjd), PRE_1972_MJD), startrow=start)
        t.putcol("Multiplier", np.zeros(len(mjd)), startrow=start)
        t.putkeyword("VS_DATE", stamp)
        t.putkeyword("VS_CREATE", stamp)
        t.putkeyword("VS_TYPE", f"TAI_UTC difference from IERS Bulletin C via astropy-iers-data {version('astropy-iers-data')}")
        t.close()
    return {"table": str(target), "source": str(source), "vs_date": stamp, "rows": start + len(mjd),
            "last_leap_mjd": float(mjd[-1]), "tai_utc_now": float(tai_utc[-1])}


def main() -> None:
    import json

    print(json.dumps(rebuild()))


if __name__ == "__main__":
    main()

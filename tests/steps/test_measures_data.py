"""casacore's leap-second table is current (no SEVERE line) and agrees with ERFA's own table."""
import subprocess
import sys
from datetime import date

import erfa
import numpy as np
from casacore import tables

from orca_steps.measures_data import rebuild, release_date, wheel_table


def test_casacore_logs_no_severe_and_counts_37_leap_seconds():
    """In a fresh process (casacore reads TAI_UTC once), UTC->TAI on the demo's date and today."""
    code = (
        "from casacore.measures import measures\n"
        "dm = measures()\n"
        "for t in ('2025-06-15T04:18:18', 'today'):\n"
        "    utc = dm.epoch('utc', t)\n"
        "    tai = dm.measure(utc, 'tai')\n"
        "    print(round((tai['m0']['value'] - utc['m0']['value']) * 86400, 3))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "SEVERE" not in out.stdout + out.stderr, out.stderr
    assert out.stdout.split() == ["37.0", "37.0"]


def test_rebuilt_table_agrees_with_erfa(tmp_path):
    """Every leap second from 1972 on, as ERFA (pyerfa's built-in table) has it, at day resolution."""
    target = tmp_path / "TAI_UTC"
    tables.table(str(wheel_table()), ack=False).copy(str(target), deep=True).close()
    result = rebuild(target)
    t = tables.table(str(target), ack=False)
    mjd, dutc = t.getcol("MJD"), t.getcol("dUTC")
    assert t.getkeyword("VS_DATE") == release_date().strftime("%Y/%m/%d/00:00") == result["vs_date"]
    for day in np.arange(41317, 61000, 17.0):
        y, m, d, _ = erfa.jd2cal(2400000.5, day)
        expected = erfa.dat(y, m, d, 0.0)
        got = dutc[np.searchsorted(mjd, day, side="right") - 1]
        assert got == expected, f"MJD {day}: table {got} s, ERFA {expected} s"
    assert (date.today() - release_date()).days < 365 * 2, "astropy-iers-data is older than two years"


def test_debian_casacore_tools_read_the_same_current_table():
    """WSClean, AOFlagger and taql (Debian's casacore) are pointed at the wheel's measures by tool_env."""
    from orca_steps.tools import require_tool, tool_env

    out = subprocess.run([require_tool("taql"), 'calc meas.riset("SUN", 2025-06-15, "OVRO_MMA")'],
                         capture_output=True, text=True, env=tool_env())
    assert "15-Jun-2025/12:3" in out.stdout, out.stdout + out.stderr
    assert "SEVERE" not in out.stdout + out.stderr

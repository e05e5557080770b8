"""rephase: the fixed concat, whose rows are phased to their own zenith, ends at the middle of the LST
hour and agrees row by row with DP3 phaseshift run on each input MS alone (one field each)."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from orca_steps import msstate
from orca_steps.concat import concatenate_ms
from orca_steps.errors import InputError
from orca_steps.fix_field import PHASE_DIR_COLUMN, fix_field
from orca_steps.rephase import centre_text, lst_phase_centre, rephase_ms

from phase2_data import phase1_outputs

N_INT, N_ANT = 3, 24
C = 299792458.0
# casacore recomputes UVW for the new centre (as chgcentre does); DP3 rotates the old UVW, which the
# simulator computed with astropy (as pyuvdata-written MS are). casacore's J2000 UVW and astropy's GCRS
# projection differ by a direction-dependent term of up to ~1e-4 of the baseline length (aberration
# size; pyuvdata issue #929 discusses the same spread). Once that W difference is accounted for, the visibilities agree to float32 precision.
UVW_REL_TOL = 1.5e-4
PHASE_TOL_DEG = 0.05  # after removing 2 pi (w_ours - w_dp3) / lambda
AMP_REL_TOL = 1e-5


def dp3_phaseshift(ms: Path, out: Path, column: str, centre: str) -> Path:
    dp3 = Path(sys.executable).with_name("DP3.py")
    subprocess.run([str(dp3), f"msin={ms}", f"msin.datacolumn={column}", f"msout={out}", "steps=[shift]",
                    "shift.type=phaseshift", f"shift.phasecenter=[{centre.replace(' ', ',')}]"],
                   check=True, capture_output=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    return out


@pytest.fixture(scope="module")
def rephased(tmp_path_factory):
    root = tmp_path_factory.mktemp("rephase")
    paths, truth = phase1_outputs(root, n_integrations=N_INT, n_antennas=N_ANT, write_model=True)
    ms = concatenate_ms([str(p) for p in paths], root / "73MHz_concat.ms").concat_ms
    fix_field(ms)
    ra, dec = lst_phase_centre("14h")
    result = rephase_ms(ms, ra, dec)
    return root, paths, Path(ms), result


def test_the_centre_is_the_middle_of_the_lst_hour_as_orca_writes_it():
    ra, dec = lst_phase_centre("14h")
    assert centre_text(ra, dec) == "14h30m00s +37d12m57.057s"
    assert np.rad2deg(ra) == pytest.approx(217.5) and np.rad2deg(dec) == pytest.approx(37.21584917, abs=1e-8)
    assert centre_text(*lst_phase_centre("00h")) == "00h30m00s +37d12m57.057s"
    with pytest.raises(InputError, match="LST label '25h' is malformed"):
        lst_phase_centre("25h")


def test_every_row_and_column_agrees_with_dp3_phaseshift(rephased):
    root, paths, ms, result = rephased
    assert result.columns == ["DATA", "CORRECTED_DATA", "MODEL_DATA"] and result.rows_moved == result.n_rows
    assert result.max_shift_deg > 4  # the last integration's zenith is far from the first's: a real test
    with tables.table(str(ms), ack=False) as tab:
        mine = {c: tab.getcol(c) for c in ("TIME", "ANTENNA1", "ANTENNA2", "UVW", "DATA", "CORRECTED_DATA", "MODEL_DATA")}
    for k, path in enumerate(paths):
        for column in ("DATA", "CORRECTED_DATA", "MODEL_DATA"):
            out = dp3_phaseshift(path, root / f"dp3_{k}_{column}.ms", column, result.phase_centre)
            with tables.table(f"{out}/SPECTRAL_WINDOW", ack=False) as spw:
                freqs = spw.getcell("CHAN_FREQ", 0)
            with tables.table(str(out), ack=False) as ref:
                time, a1, a2 = ref.getcol("TIME"), ref.getcol("ANTENNA1"), ref.getcol("ANTENNA2")
                uvw, vis = ref.getcol("UVW"), ref.getcol("DATA")
            rows = np.flatnonzero(mine["TIME"] == time[0])
            np.testing.assert_array_equal(mine["ANTENNA1"][rows], a1)
            np.testing.assert_array_equal(mine["ANTENNA2"][rows], a2)
            length = np.linalg.norm(uvw, axis=1, keepdims=True)
            assert np.all(np.abs(mine["UVW"][rows] - uvw) <= UVW_REL_TOL * length + 1e-6)
            cross = a1 != a2
            got, want = mine[column][rows][cross], vis[cross]
            dw_turns = (mine["UVW"][rows][cross, 2] - uvw[cross, 2])[:, None] * freqs[None, :] / C
            residual = np.angle(got * np.conj(want) * np.exp(2j * np.pi * dw_turns)[:, :, None])
            strong = np.abs(want) > 1e-3 * np.abs(want).max()
            assert np.rad2deg(np.abs(residual[strong])).max() < PHASE_TOL_DEG
            np.testing.assert_allclose(np.abs(got), np.abs(want), rtol=AMP_REL_TOL, atol=1e-3)
            np.testing.assert_allclose(mine[column][rows][~cross], vis[~cross], rtol=1e-6)  # autos: no phase


def test_field_and_per_row_centres_are_updated_and_a_second_run_moves_nothing(rephased):
    _, _, ms, result = rephased
    target = np.array(lst_phase_centre("14h"))
    with tables.table(f"{ms}/FIELD", ack=False) as field:
        assert field.nrows() == 1
        for column in ("PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR"):
            np.testing.assert_allclose(field.getcell(column, 0)[0], target, atol=1e-12)
    with tables.table(str(ms), ack=False) as tab:
        np.testing.assert_allclose(tab.getcol(PHASE_DIR_COLUMN), np.tile(target, (tab.nrows(), 1)), atol=1e-12)
        before = tab.getcol("DATA"), tab.getcol("UVW")
    again = rephase_ms(ms, *target)
    assert again.rows_moved == 0 and again.max_shift_deg < 1e-9
    with tables.table(str(ms), ack=False) as tab:
        np.testing.assert_array_equal(tab.getcol("DATA"), before[0])
        np.testing.assert_array_equal(tab.getcol("UVW"), before[1])
    assert msstate.done_info(ms, "rephase") == {"ra_deg": 217.5, "dec_deg": pytest.approx(37.21584917)}


def test_an_ms_left_half_written_is_refused(rephased, tmp_path):
    _, paths, _, _ = rephased
    ms = concatenate_ms([str(paths[0])], tmp_path / "73MHz_concat.ms").concat_ms
    with tables.table(ms, readonly=False, ack=False) as tab:
        tab.putkeyword(msstate.IN_PROGRESS, "rephase")
    with pytest.raises(InputError, match="left half-written by an interrupted 'rephase' step; rebuild it"):
        rephase_ms(ms, *lst_phase_centre("14h"))


def _zenith_distance_deg(ms, ra, dec):
    """Reference from astropy (not the step's casacore code): the centre's distance from the zenith."""
    from astropy import units as u
    from astropy.coordinates import AltAz, EarthLocation, SkyCoord
    from astropy.time import Time
    from astropy.utils import iers

    iers.conf.auto_download = False
    with tables.table(str(ms), ack=False) as tab:
        times = np.unique(tab.getcol("TIME"))
    where = EarthLocation(lon=-118.2816667 * u.deg, lat=37.23977727 * u.deg, height=1222 * u.m)
    frame = AltAz(obstime=Time(times / 86400.0, format="mjd", scale="utc"), location=where)
    alt = SkyCoord(ra * u.rad, dec * u.rad, frame="fk5", equinox="J2000").transform_to(frame).alt.deg
    return 90.0 - alt


@pytest.mark.parametrize("label, refused", [("14h", False), ("13h", True), ("15h", True), ("09h", True)])
def test_a_wrong_lst_label_is_refused_before_writing(tmp_path, label, refused):
    paths, _ = phase1_outputs(tmp_path, n_integrations=2, n_antennas=8)  # the first and last of LST 14h
    ms = concatenate_ms([str(p) for p in paths], tmp_path / "73MHz_concat.ms").concat_ms
    ra, dec = lst_phase_centre(label)
    far = _zenith_distance_deg(ms, ra, dec).max()
    assert (far > 10.0) == refused  # the rule, checked against astropy: one hour off is already too far
    before = tables.table(str(ms), ack=False).getcol("DATA")
    if refused:
        with pytest.raises(InputError, match=rf"new phase centre {label[:2]}h30m00s .* deg from the zenith.*LST label"):
            rephase_ms(ms, ra, dec)
        np.testing.assert_array_equal(tables.table(str(ms), ack=False).getcol("DATA"), before)
    else:
        assert rephase_ms(ms, ra, dec).rows_moved > 0


def test_either_correlation_order_is_rotated_alike(tmp_path):
    """Rephasing touches every correlation alike: the XX, YY, XY, YX file, put back in XX, XY, YX, YY order
    by its own CORR_TYPE, equals the rephased XX, XY, YX, YY file."""
    out = {}
    for order in ("XX,XY,YX,YY", "XX,YY,XY,YX"):
        paths, _ = phase1_outputs(tmp_path / order, n_integrations=1, n_antennas=8, corr_order=order)
        rephase_ms(paths[0], *lst_phase_centre("14h"))
        with tables.table(str(paths[0]), ack=False) as tab:
            corr = list(tables.table(str(paths[0] / "POLARIZATION"), ack=False).getcell("CORR_TYPE", 0))
            out[order] = tab.getcol("CORRECTED_DATA")[..., [corr.index(c) for c in (9, 10, 11, 12)]]
    np.testing.assert_array_equal(out["XX,YY,XY,YX"], out["XX,XY,YX,YY"])

"""fix-field: one FIELD row, FIELD_ID 0 everywhere, and every row's true phase centre kept."""
import numpy as np
import pytest
from casacore import tables

from orca_steps import msstate
from orca_steps.concat import concatenate_ms
from orca_steps.errors import InputError
from orca_steps.fix_field import PHASE_DIR_COLUMN, fix_field

from phase2_data import phase1_outputs

N_INT, N_ANT = 4, 24


def test_one_field_and_each_rows_centre_recorded(tmp_path):
    paths, truth = phase1_outputs(tmp_path, n_integrations=N_INT, n_antennas=N_ANT)
    ms = concatenate_ms([str(p) for p in paths], tmp_path / "73MHz_concat.ms").concat_ms
    with tables.table(f"{ms}/FIELD", ack=False) as field:
        first_row = {c: field.getcell(c, 0) for c in ("NAME", "PHASE_DIR", "DELAY_DIR", "REFERENCE_DIR")}
    with tables.table(ms, ack=False) as tab:
        data_before = tab.getcol("CORRECTED_DATA")

    result = fix_field(ms)
    assert result.n_fields_before == N_INT and not result.already_done
    with tables.table(ms, ack=False) as tab:
        assert np.all(tab.getcol("FIELD_ID") == 0)
        centres = np.rad2deg(tab.getcol(PHASE_DIR_COLUMN))
        times = tab.getcol("TIME")
        np.testing.assert_array_equal(tab.getcol("CORRECTED_DATA"), data_before)
    with tables.table(f"{ms}/FIELD", ack=False) as field:
        assert field.nrows() == 1
        for column, value in first_row.items():
            np.testing.assert_array_equal(field.getcell(column, 0), value)  # orca keeps the first field
    for entry in truth["units"][0]["ms"]:  # each integration's own zenith, as simulated
        rows = times == entry["time_mjd_s"]
        assert rows.sum() == N_ANT * (N_ANT + 1) // 2
        np.testing.assert_allclose(centres[rows] % [360, 360], np.tile(entry["phase_centre_deg"], (rows.sum(), 1)),
                                   atol=1e-9)
    assert msstate.interrupted_step(ms) is None

    again = fix_field(ms)
    assert again.already_done and again.n_rows == result.n_rows
    with tables.table(ms, ack=False) as tab:
        np.testing.assert_array_equal(np.rad2deg(tab.getcol(PHASE_DIR_COLUMN)), centres)


def test_not_an_ms_is_a_clear_error(tmp_path):
    (tmp_path / "x.ms").mkdir()
    with pytest.raises(InputError, match="x.ms: not a Measurement Set"):
        fix_field(tmp_path / "x.ms")

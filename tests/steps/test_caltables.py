"""CASA B / Xf cal tables: layout as CASA writes it, and an exact round trip."""
import numpy as np
import pytest
from casacore import tables

from orca_steps.caltables import read_caltable, write_bandpass_table, write_xyphase_table
from orca_steps.errors import InputError

NAMES = [f"LWA{i:03d}" for i in (5, 1, 7, 3)]  # correlator order, not sorted


def _gains(rng, n_ant, nchan):
    return (1 + 0.2 * rng.normal(size=(n_ant, nchan, 2))) * np.exp(1j * rng.normal(size=(n_ant, nchan, 2)))


def test_bandpass_table_has_casa_layout(tmp_path):
    rng = np.random.default_rng(1)
    freqs = 73.3e6 + 95.7e3 * np.arange(6)
    path = write_bandpass_table(tmp_path / "x.B", _gains(rng, 4, 6), freqs, NAMES, time_s=5.2e9)
    with tables.table(str(path), ack=False) as tab:
        assert tab.info()["type"] == "Calibration" and tab.info()["subType"] == "B Jones"
        kw = tab.getkeywords()
        assert (kw["ParType"], kw["VisCal"], kw["PolBasis"]) == ("Complex", "B Jones", "unknown")
        assert "MSName" in kw
        assert set(tab.colnames()) == {"TIME", "FIELD_ID", "SPECTRAL_WINDOW_ID", "ANTENNA1", "ANTENNA2", "INTERVAL",
                                       "SCAN_NUMBER", "OBSERVATION_ID", "CPARAM", "PARAMERR", "FLAG", "SNR", "WEIGHT"}
        assert tab.getcoldesc("TIME")["keywords"]["MEASINFO"] == {"type": "epoch", "Ref": "UTC"}
        assert tab.nrows() == 4
        assert tab.getcell("CPARAM", 0).shape == (6, 2)
        assert list(tab.getcol("ANTENNA1")) == [0, 1, 2, 3]
        assert set(tab.getcol("ANTENNA2")) == {-1}
        assert np.all(tab.getcol("TIME") == 5.2e9)
    for sub in ("ANTENNA", "FIELD", "SPECTRAL_WINDOW", "OBSERVATION", "HISTORY"):
        assert (path / sub / "table.dat").is_file()
    with tables.table(str(path / "SPECTRAL_WINDOW"), ack=False) as spw:
        np.testing.assert_allclose(spw.getcell("CHAN_FREQ", 0), freqs)
        np.testing.assert_allclose(spw.getcell("CHAN_WIDTH", 0), 95.7e3)
    with tables.table(str(path / "ANTENNA"), ack=False) as ant:
        assert list(ant.getcol("NAME")) == NAMES


def test_bandpass_round_trip_two_windows_with_flags(tmp_path):
    rng = np.random.default_rng(2)
    freqs = [50e6 + 23.9e3 * np.arange(192), 55e6 + 23.9e3 * np.arange(192)]
    gains = [_gains(rng, 4, 192), _gains(rng, 4, 192)]
    flags = [rng.random((4, 192, 2)) < 0.1, np.zeros((4, 192, 2), bool)]
    path = write_bandpass_table(tmp_path / "two.B", gains, freqs, NAMES, flags=flags)
    cal = read_caltable(path)
    assert cal.kind == "B" and cal.antenna_names == NAMES and len(cal.windows) == 2
    for w, g, f, fr in zip(cal.windows, gains, flags, freqs):
        np.testing.assert_allclose(w.gains, g, rtol=1e-6)  # stored as complex64
        assert np.array_equal(w.flags, f)
        np.testing.assert_allclose(w.freqs, fr)
    assert cal.windows[1].lo == pytest.approx(55e6 - 23.9e3 / 2)


def test_windows_whose_rows_interleave_are_read_the_same(tmp_path):
    """Rows ordered by antenna, then window (not as CASA writes them) give the same solutions."""
    rng = np.random.default_rng(4)
    freqs = [50e6 + 23.9e3 * np.arange(8), 55e6 + 23.9e3 * np.arange(8)]
    gains = [_gains(rng, 4, 8), _gains(rng, 4, 8)]
    flags = [rng.random((4, 8, 2)) < 0.3, rng.random((4, 8, 2)) < 0.3]
    path = write_bandpass_table(tmp_path / "two.B", gains, freqs, NAMES, flags=flags)
    with tables.table(str(path), ack=False) as tab:
        tab.sort("ANTENNA1, SPECTRAL_WINDOW_ID").copy(str(tmp_path / "mixed.B"), deep=True).close()
    with tables.table(str(tmp_path / "mixed.B"), ack=False) as tab:
        assert list(tab.getcol("SPECTRAL_WINDOW_ID")) == [0, 1] * 4
    cal = read_caltable(tmp_path / "mixed.B")
    for w, g, f in zip(cal.windows, gains, flags):
        np.testing.assert_allclose(w.gains, g, rtol=1e-6)
        assert np.array_equal(w.flags, f)


def test_xyphase_round_trip_is_diag_exp_iphi_one(tmp_path):
    freqs = 73.3e6 + 95.7e3 * np.arange(8)
    phase = np.linspace(-2.5, 2.5, 8)
    path = write_xyphase_table(tmp_path / "x.Xf", phase, freqs, NAMES)
    with tables.table(str(path), ack=False) as tab:
        assert tab.getkeywords()["VisCal"] == "Xf Jones"
        assert tab.getcell("CPARAM", 0).shape == (8, 1)  # CASA's XJones has one parameter
    cal = read_caltable(path)
    assert cal.kind == "Xf"
    w = cal.windows[0]
    np.testing.assert_allclose(np.angle(w.gains[:, :, 0]), np.broadcast_to(phase, (4, 8)), atol=1e-6)
    np.testing.assert_allclose(w.gains[:, :, 1], 1.0)
    assert not w.flags.any()


def test_existing_table_is_not_replaced_without_overwrite(tmp_path):
    rng = np.random.default_rng(3)
    freqs = 73.3e6 + 95.7e3 * np.arange(4)
    path = write_bandpass_table(tmp_path / "a.B", _gains(rng, 4, 4), freqs, NAMES)
    with pytest.raises(InputError, match="a.B: calibration table already exists"):
        write_bandpass_table(path, _gains(rng, 4, 4), freqs, NAMES)
    new = _gains(rng, 4, 4)
    write_bandpass_table(path, new, freqs, NAMES, overwrite=True)
    np.testing.assert_allclose(read_caltable(path).windows[0].gains, new, rtol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["a.B"]  # no temporary left behind


def test_bad_shapes_and_bad_tables_name_the_file(tmp_path):
    freqs = 73.3e6 + 95.7e3 * np.arange(4)
    with pytest.raises(InputError, match=r"bad.B: window 0 parameters have shape \(4, 3, 2\)"):
        write_bandpass_table(tmp_path / "bad.B", np.ones((4, 3, 2), complex), freqs, NAMES)
    with pytest.raises(InputError, match="nothere.B: calibration table does not exist"):
        read_caltable(tmp_path / "nothere.B")
    path = write_bandpass_table(tmp_path / "g.B", np.ones((4, 4, 2), complex), freqs, NAMES)
    with tables.table(str(path), readonly=False, ack=False) as tab:
        tab.putkeyword("VisCal", "G Jones")
    with pytest.raises(InputError, match="g.B: calibration type 'G Jones' is not supported"):
        read_caltable(path)

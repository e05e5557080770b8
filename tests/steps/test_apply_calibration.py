"""apply-calibration against the simulator's truth: CORRECTED_DATA = uncorrupted visibilities, flags exact."""
import numpy as np
import pytest
from casacore import tables

from orca_steps import config
from orca_steps.apply_calibration import apply_calibration
from orca_steps.caltables import read_caltable, write_bandpass_table, write_xyphase_table
from orca_steps.cli import main
from orca_steps.copy_ms import copy_ms
from orca_steps.errors import CalibrationError, InputError
from phase1_data import columns, make_source, tree_hash

P_POL, Q_POL = [0, 0, 1, 1], [0, 1, 0, 1]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A noise-free MS with MODEL_DATA (the uncorrupted visibilities) and its B/Xf tables."""
    ms, entry = make_source(tmp_path_factory.mktemp("cal"), noise_jy=0.0, write_model=True)
    return ms, entry


@pytest.fixture()
def work_ms(clean, tmp_path):
    return copy_ms(clean[0], tmp_path / "work").ms_path


def _relative_error(ms, flags=None):
    corrected, model, flag, a1, a2 = columns(ms, "CORRECTED_DATA", "MODEL_DATA", "FLAG", "ANTENNA1", "ANTENNA2")
    good = ~flag & (a1 != a2)[:, None, None]  # MODEL_DATA holds no autocorrelations
    return np.max(np.abs(corrected[good] - model[good]) / np.abs(model[good])), good.sum()


def _fully_flagged_antennas(ms):
    flag, a1, a2 = columns(ms, "FLAG", "ANTENNA1", "ANTENNA2")
    full = flag.all(axis=(1, 2))
    bad = sorted({int(a) for a in np.unique(np.concatenate([a1, a2])) if full[(a1 == a) | (a2 == a)].all()})
    assert np.array_equal(full, np.isin(a1, bad) | np.isin(a2, bad))
    assert not flag[~full].any()
    return bad


def test_noise_free_corrected_data_equals_the_uncorrupted_visibilities(clean, work_ms):
    src, entry = clean
    before_src = tree_hash(src)
    data_before, weight_before = columns(work_ms, "DATA", "WEIGHT")
    result = apply_calibration(work_ms, entry["bp_table"], entry["xy_table"])
    assert result.spw_map == {0: {"B": 0, "Xf": 0}}
    err, n = _relative_error(work_ms)
    assert n == 22 * 21 // 2 * 48 * 4  # every cross-correlation of the 22 live antennas
    assert err < 1e-5
    # The table flags the dead antennas' solutions; nothing else is flagged.
    assert _fully_flagged_antennas(work_ms) == entry["dead_antennas"]
    data_after, weight_after = columns(work_ms, "DATA", "WEIGHT")
    assert np.array_equal(data_before, data_after) and np.array_equal(weight_before, weight_after)
    corrected, flag = columns(work_ms, "CORRECTED_DATA", "FLAG")
    apply_calibration(work_ms, entry["bp_table"], entry["xy_table"])
    again, flag_again = columns(work_ms, "CORRECTED_DATA", "FLAG")
    assert np.array_equal(corrected, again) and np.array_equal(flag, flag_again), "rerun gives the same result"
    assert tree_hash(src) == before_src


def test_channels_above_85_mhz_are_flagged(tmp_path):
    src, entry = make_source(tmp_path, name="20250615_041823_82MHz_averaged.ms", subband="82MHz",
                             noise_jy=0.0, write_model=True, dead_antennas=0, noisy_antennas=0)
    ms = copy_ms(src, tmp_path / "work").ms_path
    apply_calibration(ms, entry["bp_table"], entry["xy_table"])
    flag = columns(ms, "FLAG")[0]
    freqs = config.subband_channel_freqs("82MHz")
    above = freqs > config.MAX_USABLE_FREQ_HZ
    assert 0 < above.sum() < freqs.size
    assert flag[:, above].all() and not flag[:, ~above].any()
    assert _relative_error(ms)[0] < 1e-5


def _corrupt_with(ms, jones):
    """Replace DATA by J_p MODEL J_q^H for diagonal ``jones`` (n_ant, nchan, 2) given on the MS grid."""
    with tables.table(ms, readonly=False, ack=False) as tab:
        model, a1, a2 = tab.getcol("MODEL_DATA"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        data = model * jones[a1][:, :, P_POL] * np.conj(jones[a2][:, :, Q_POL])
        tab.putcol("DATA", data.astype(np.complex64))


def test_coarser_table_grid_is_interpolated_and_channels_outside_it_flagged(clean, work_ms, tmp_path):
    names = clean[1]["antenna_names"]
    ms_freqs = config.subband_channel_freqs("73MHz", 48)
    table_freqs = config.subband_channel_freqs("73MHz", 16)  # coarser: MS edge channels fall outside
    rng = np.random.default_rng(5)
    offset = rng.normal(size=(len(names), 1, 2)) + 1j * rng.normal(size=(len(names), 1, 2)) + 3
    slope = (rng.normal(size=(len(names), 1, 2)) + 1j * rng.normal(size=(len(names), 1, 2))) / 4e6

    def gains(f):  # linear in frequency, so linear interpolation is exact
        return offset + slope * (f - 75e6)[None, :, None]

    bp = write_bandpass_table(tmp_path / "lin.B", gains(table_freqs), table_freqs, names)
    xy = write_xyphase_table(tmp_path / "zero.Xf", np.zeros(16), table_freqs, names)
    _corrupt_with(work_ms, gains(ms_freqs))
    apply_calibration(work_ms, bp, xy)
    outside = (ms_freqs < table_freqs[0]) | (ms_freqs > table_freqs[-1])
    assert outside.sum() == 2  # the first and last MS channel
    flag = columns(work_ms, "FLAG")[0]
    assert flag[:, outside].all() and not flag[:, ~outside].any()
    assert _relative_error(work_ms)[0] < 1e-5


def test_cal_window_is_chosen_by_largest_overlap(clean, work_ms, tmp_path):
    entry = clean[1]
    bp = read_caltable(entry["bp_table"])
    real = bp.windows[0]
    junk = np.full(real.gains.shape, 5.0 + 5.0j)
    shifted = real.freqs + 0.75 * (real.freqs[-1] - real.freqs[0])  # overlaps the upper quarter only
    far = config.subband_channel_freqs("50MHz", 192)
    table = write_bandpass_table(tmp_path / "three.B", [junk, junk, real.gains], [far, shifted, real.freqs],
                                 bp.antenna_names, flags=[None, None, real.flags])
    result = apply_calibration(work_ms, table, entry["xy_table"])
    assert result.spw_map == {0: {"B": 2, "Xf": 0}}
    assert _relative_error(work_ms)[0] < 1e-5


def test_no_overlapping_window_is_a_calibration_error_naming_both_files(clean, work_ms, tmp_path, capsys):
    entry = clean[1]
    names = entry["antenna_names"]
    far = config.subband_channel_freqs("50MHz", 192)
    bp = write_bandpass_table(tmp_path / "50MHz.B", np.ones((len(names), 192, 2)), far, names)
    before = tree_hash(work_ms)
    with pytest.raises(CalibrationError) as info:
        apply_calibration(work_ms, bp, entry["xy_table"])
    assert str(bp) in str(info.value) and str(work_ms) in str(info.value) and "no spectral window overlaps" in str(info.value)
    assert tree_hash(work_ms) == before, "nothing written when the table does not fit"
    code = main(["apply-calibration", "--ms", work_ms, "--bp_table", str(bp), "--xy_table", entry["xy_table"]])
    assert code == 2
    assert "no spectral window overlaps" in capsys.readouterr().err.strip().splitlines()[-1]


def test_a_flagged_solution_flags_only_the_correlations_it_touches(clean, work_ms, tmp_path):
    entry = clean[1]
    bp = read_caltable(entry["bp_table"])
    w = bp.windows[0]
    flags = w.flags.copy()
    ant = next(a for a in range(len(bp.antenna_names)) if a not in entry["dead_antennas"])
    flags[ant, 41, 1] = True  # native channel 41 (MS channel 10), Y polarisation
    table = write_bandpass_table(tmp_path / "oneflag.B", w.gains, w.freqs, bp.antenna_names, flags=flags)
    apply_calibration(work_ms, table, entry["xy_table"])
    flag, a1, a2 = columns(work_ms, "FLAG", "ANTENNA1", "ANTENNA2")
    dead = np.isin(a1, entry["dead_antennas"]) | np.isin(a2, entry["dead_antennas"])
    live = ~dead
    expected = np.zeros(flag.shape, bool)
    expected[(a1 == ant), 10, 2:] = True       # YX, YY: antenna 1's Y
    expected[(a2 == ant), 10, 1] = True        # XY: antenna 2's Y
    expected[(a2 == ant), 10, 3] = True        # YY
    assert np.array_equal(flag[live], expected[live])
    assert flag[dead].all()


def test_subband_label_is_checked(clean, work_ms, capsys):
    entry = clean[1]
    with pytest.raises(InputError, match="subband label '74MHz' is malformed"):
        apply_calibration(work_ms, entry["bp_table"], entry["xy_table"], subband="74MHz")
    with pytest.raises(CalibrationError, match="are not in subband 50MHz"):
        apply_calibration(work_ms, entry["bp_table"], entry["xy_table"], subband="50MHz")
    code = main(["apply-calibration", "--ms", work_ms, "--bp_table", entry["bp_table"],
                 "--xy_table", entry["xy_table"], "--subband", "73mhz"])
    assert code == 2 and "malformed" in capsys.readouterr().err.strip().splitlines()[-1]
    assert "CORRECTED_DATA" not in tables.table(work_ms, ack=False).colnames()


def test_tables_given_the_wrong_way_round(clean, work_ms):
    entry = clean[1]
    with pytest.raises(CalibrationError, match="expected a B Jones bandpass table, found Xf Jones"):
        apply_calibration(work_ms, entry["xy_table"], entry["bp_table"])


def test_a_neighbouring_subbands_table_is_refused(clean, work_ms, tmp_path):
    """73MHz data with 78MHz tables (adjacent, no overlap) is an error, unless a tolerance is asked for."""
    names = clean[1]["antenna_names"]
    neighbour = config.subband_channel_freqs("78MHz", 192)
    bp = write_bandpass_table(tmp_path / "78MHz.B", np.ones((len(names), 192, 2)), neighbour, names)
    xy = write_xyphase_table(tmp_path / "78MHz.Xf", np.zeros(192), neighbour, names)
    with pytest.raises(CalibrationError, match="no spectral window overlaps"):
        apply_calibration(work_ms, bp, xy)
    result = apply_calibration(work_ms, bp, xy, spw_tolerance_hz=1e6)  # explicitly allowed: nearest window
    assert result.spw_map == {0: {"B": 0, "Xf": 0}}

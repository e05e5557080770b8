"""apply-calibration against the simulator's truth: CORRECTED_DATA = uncorrupted visibilities, flags exact."""
import shutil
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from orca_steps import config, products
from orca_steps.apply_calibration import SOLUTIONS_SUFFIX, apply_calibration
from orca_steps.caltables import read_caltable, write_bandpass_table, write_xyphase_table
from orca_steps.cli import main
from orca_steps.copy_ms import copy_ms
from orca_steps.errors import CalibrationError, InputError
from orca_steps.msio import baseline_runs
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


def test_average_option_undoes_the_simulators_block_averaged_gains(clean, work_ms):
    """The simulator corrupts each MS channel by the mean of its 4 native channels' gains: 'average' inverts it."""
    src, entry = clean
    before_src = tree_hash(src)
    data_before, weight_before = columns(work_ms, "DATA", "WEIGHT")
    result = apply_calibration(work_ms, entry["bp_table"], entry["xy_table"], freq_interp="average")
    assert result.spw_map == {0: {"B": 0, "Xf": 0}}
    err, n = _relative_error(work_ms)
    assert n == 22 * 21 // 2 * 48 * 4  # every cross-correlation of the 22 live antennas
    assert err < 1e-5
    # The table flags the dead antennas' solutions; nothing else is flagged.
    assert _fully_flagged_antennas(work_ms) == entry["dead_antennas"]
    data_after, weight_after = columns(work_ms, "DATA", "WEIGHT")
    assert np.array_equal(data_before, data_after) and np.array_equal(weight_before, weight_after)
    corrected, flag = columns(work_ms, "CORRECTED_DATA", "FLAG")
    apply_calibration(work_ms, entry["bp_table"], entry["xy_table"], freq_interp="average")
    again, flag_again = columns(work_ms, "CORRECTED_DATA", "FLAG")
    assert np.array_equal(corrected, again) and np.array_equal(flag, flag_again), "rerun gives the same result"
    assert tree_hash(src) == before_src


def test_equal_grid_tables_give_the_uncorrupted_visibilities_by_default(tmp_path):
    """Tables on the MS grid: CASA's 'linear' takes each channel's own solution, so C = MODEL exactly."""
    src, entry = make_source(tmp_path, noise_jy=0.0, write_model=True, caltable_channels=48)
    ms = copy_ms(src, tmp_path / "work").ms_path
    apply_calibration(ms, entry["bp_table"], entry["xy_table"])
    err, n = _relative_error(ms)
    assert err < 1e-5 and n == 22 * 21 // 2 * 48 * 4
    assert _fully_flagged_antennas(ms) == entry["dead_antennas"]


def test_channels_above_85_mhz_are_flagged(tmp_path):
    src, entry = make_source(tmp_path, name="20250615_041823_82MHz_averaged.ms", subband="82MHz",
                             noise_jy=0.0, write_model=True, dead_antennas=0, noisy_antennas=0,
                             caltable_channels=48)
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


def test_coarser_table_grid_is_interpolated_in_amplitude_and_phase_and_held_at_the_edges(clean, work_ms, tmp_path):
    names = clean[1]["antenna_names"]
    ms_freqs = config.subband_channel_freqs("73MHz", 48)
    table_freqs = config.subband_channel_freqs("73MHz", 16)  # coarser: MS edge channels fall outside
    rng = np.random.default_rng(5)
    amp0 = rng.uniform(0.5, 2, size=(len(names), 1, 2))
    amp_slope = rng.uniform(-0.1, 0.1, size=(len(names), 1, 2)) / 1e6
    phase0 = rng.uniform(-np.pi, np.pi, size=(len(names), 1, 2))
    delay = rng.uniform(-1e-6, 1e-6, size=(len(names), 1, 2))  # up to 4.6 turns across the band: phases wrap

    def gains(f):  # amplitude and phase linear in frequency: CASA's interpolation is exact for these
        x = (f - 75e6)[None, :, None]
        return (amp0 + amp_slope * x) * np.exp(1j * (phase0 + 2 * np.pi * delay * x))

    bp = write_bandpass_table(tmp_path / "lin.B", gains(table_freqs), table_freqs, names)
    xy = write_xyphase_table(tmp_path / "zero.Xf", np.zeros(16), table_freqs, names)
    _corrupt_with(work_ms, gains(ms_freqs))
    apply_calibration(work_ms, bp, xy)
    outside = (ms_freqs < table_freqs[0]) | (ms_freqs > table_freqs[-1])
    assert list(np.flatnonzero(outside)) == [0, 47]
    corrected, model, flag, a1, a2 = columns(work_ms, "CORRECTED_DATA", "MODEL_DATA", "FLAG", "ANTENNA1", "ANTENNA2")
    assert not flag.any(), "channels beyond the table's are not flagged (CASA holds the edge solution)"
    cross = a1 != a2
    inside = corrected[cross][:, ~outside]
    np.testing.assert_allclose(inside, model[cross][:, ~outside], rtol=1e-5, atol=0)
    held = gains(table_freqs[[0, -1]])  # the edge MS channels are divided by the edge table solutions
    true = gains(ms_freqs[[0, -1]])
    factor = (true[a1][:, :, P_POL] * np.conj(true[a2][:, :, Q_POL])
              / (held[a1][:, :, P_POL] * np.conj(held[a2][:, :, Q_POL])))
    np.testing.assert_allclose(corrected[cross][:, outside], (model[:, [0, -1]] * factor)[cross], rtol=1e-5)


def test_average_option_flags_channels_outside_a_coarser_table(clean, work_ms, tmp_path):
    names = clean[1]["antenna_names"]
    table_freqs = config.subband_channel_freqs("73MHz", 16)
    bp = write_bandpass_table(tmp_path / "one.B", np.ones((len(names), 16, 2)), table_freqs, names)
    xy = write_xyphase_table(tmp_path / "zero.Xf", np.zeros(16), table_freqs, names)
    apply_calibration(work_ms, bp, xy, freq_interp="average")
    flag = columns(work_ms, "FLAG")[0]
    assert flag[:, [0, 47]].all() and not flag[:, 1:47].any()


def test_cal_window_is_chosen_by_largest_overlap(clean, work_ms, tmp_path):
    entry = clean[1]
    bp = read_caltable(entry["bp_table"])
    real = bp.windows[0]
    junk = np.full(real.gains.shape, 5.0 + 5.0j)
    shifted = real.freqs + 0.75 * (real.freqs[-1] - real.freqs[0])  # overlaps the upper quarter only
    far = config.subband_channel_freqs("50MHz", 192)
    table = write_bandpass_table(tmp_path / "three.B", [junk, junk, real.gains], [far, shifted, real.freqs],
                                 bp.antenna_names, flags=[None, None, real.flags])
    result = apply_calibration(work_ms, table, entry["xy_table"], freq_interp="average")
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


def test_average_option_a_flagged_solution_flags_only_the_correlations_it_touches(clean, work_ms, tmp_path):
    entry = clean[1]
    bp = read_caltable(entry["bp_table"])
    w = bp.windows[0]
    flags = w.flags.copy()
    ant = next(a for a in range(len(bp.antenna_names)) if a not in entry["dead_antennas"])
    flags[ant, 41, 1] = True  # native channel 41 (MS channel 10), Y polarisation
    table = write_bandpass_table(tmp_path / "oneflag.B", w.gains, w.freqs, bp.antenna_names, flags=flags)
    apply_calibration(work_ms, table, entry["xy_table"], freq_interp="average")
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


def _live_antennas(entry):
    return [a for a in range(len(entry["antenna_names"])) if a not in entry["dead_antennas"]]


def test_a_flagged_channel_is_bridged_and_an_unsolved_polarisation_flags_its_correlations(clean, work_ms, tmp_path):
    """CASA 'linear': flagged table channels are interpolated across; a polarisation with none left is flagged."""
    entry = clean[1]
    w = read_caltable(entry["bp_table"]).windows[0]
    flags = w.flags.copy()
    ant, other = _live_antennas(entry)[:2]
    flags[ant, 40:44, 1] = True   # all of MS channel 10's native channels, Y: bridged
    flags[other, :, 1] = True      # no Y solution at all for this antenna
    table = write_bandpass_table(tmp_path / "flags.B", w.gains, w.freqs, entry["antenna_names"], flags=flags)
    apply_calibration(work_ms, table, entry["xy_table"])
    flag, a1, a2 = columns(work_ms, "FLAG", "ANTENNA1", "ANTENNA2")
    live = ~(np.isin(a1, entry["dead_antennas"]) | np.isin(a2, entry["dead_antennas"]))
    expected = np.zeros(flag.shape, bool)
    expected[a1 == other, :, 2:] = True   # YX, YY: antenna 1's Y
    expected[a2 == other, :, 1] = True    # XY: antenna 2's Y
    expected[a2 == other, :, 3] = True    # YY
    assert np.array_equal(flag[live], expected[live])


@pytest.mark.parametrize("which", ["bp_table", "xy_table"])
def test_an_entirely_flagged_table_is_refused(clean, work_ms, tmp_path, capsys, which):
    entry = clean[1]
    names, freqs = entry["antenna_names"], config.subband_channel_freqs("73MHz", 192)
    tables_ = dict(bp_table=entry["bp_table"], xy_table=entry["xy_table"])
    if which == "bp_table":
        tables_[which] = write_bandpass_table(tmp_path / "all.B", np.ones((len(names), 192, 2)), freqs, names,
                                              flags=np.ones((len(names), 192, 2), bool))
    else:
        tables_[which] = write_xyphase_table(tmp_path / "all.Xf", np.zeros(192), freqs, names,
                                             flags=np.ones(192, bool))
    before = tree_hash(work_ms)
    with pytest.raises(CalibrationError, match=f"{tables_[which]}: every solution .* is flagged"):
        apply_calibration(work_ms, **tables_)
    assert tree_hash(work_ms) == before
    code = main(["apply-calibration", "--ms", str(work_ms), "--bp_table", str(tables_["bp_table"]),
                 "--xy_table", str(tables_["xy_table"])])
    assert code == 2 and "every solution" in capsys.readouterr().err.strip().splitlines()[-1]


def test_unknown_freq_interp_is_an_input_error(clean, work_ms):
    with pytest.raises(InputError, match="freq_interp must be 'linear' or 'average'"):
        apply_calibration(work_ms, clean[1]["bp_table"], clean[1]["xy_table"], freq_interp="cubic")


def _rows_by_baseline(ms, *names):
    """``names`` columns with rows sorted by (TIME, ANTENNA1, ANTENNA2): comparable across row orders."""
    time, a1, a2, *values = columns(ms, "TIME", "ANTENNA1", "ANTENNA2", *names)
    order = np.lexsort((a2, a1, time))
    return [v[order] for v in values]


def test_row_order_and_chunking_do_not_change_the_result(clean, work_ms, tmp_path, monkeypatch):
    """Rows in baseline runs take the slice path; shuffled rows, and antenna 2 counting down, the gather
    path; runs cut by chunk edges too: all give the same CORRECTED_DATA and FLAG, row by row."""
    from orca_steps import apply_calibration as module

    entry = clean[1]
    a1, a2 = columns(work_ms, "ANTENNA1", "ANTENNA2")
    reordered = {"shuffled": np.random.default_rng(7).permutation(a1.size), "descending": np.lexsort((-a2, a1))}
    for name, order in reordered.items():
        with tables.table(str(work_ms), ack=False) as tab:
            tab.selectrows(order).copy(str(tmp_path / f"{name}.ms"), deep=True).close()
    for ms, runs in [(work_ms, "long")] + [(tmp_path / f"{name}.ms", "short") for name in reordered]:
        a1, a2 = columns(ms, "ANTENNA1", "ANTENNA2")
        assert (baseline_runs(a1, a2) is not None) == (runs == "long")
        apply_calibration(ms, entry["bp_table"], entry["xy_table"])
    expected = _rows_by_baseline(work_ms, "CORRECTED_DATA", "FLAG")
    assert expected[1].any() and not expected[1].all()
    for name in reordered:
        got = _rows_by_baseline(tmp_path / f"{name}.ms", "CORRECTED_DATA", "FLAG")
        assert all(np.array_equal(a, b) for a, b in zip(got, expected)), name
    chunked = copy_ms(clean[0], tmp_path / "chunked").ms_path
    monkeypatch.setattr(module, "CHUNK_BYTES", 37 * 48 * 4 * 8)  # 37 rows: chunk edges fall inside runs
    apply_calibration(chunked, entry["bp_table"], entry["xy_table"])
    assert all(np.array_equal(a, b) for a, b in zip(_rows_by_baseline(chunked, "CORRECTED_DATA", "FLAG"), expected))


# --- the solutions saved for the hour's other MS ---------------------------------------------------
def _second_ms(clean, work_ms):
    """Another MS of the same hour: a copy beside ``work_ms``, under another name."""
    other = Path(work_ms).parent / f"other_{Path(work_ms).name}"
    with tables.table(str(clean[0]), ack=False) as tab:
        tab.copy(str(other), deep=True).close()
    return other


def test_the_hours_other_ms_load_the_first_ones_solutions(clean, work_ms, monkeypatch):
    from orca_steps import apply_calibration as module

    entry = clean[1]
    first = apply_calibration(work_ms, entry["bp_table"], entry["xy_table"])
    saved = list((Path(work_ms).parent / products.CALIBRATION_SOLUTIONS_FOLDER).glob(f"*{SOLUTIONS_SUFFIX}"))
    assert len(saved) == 1
    other = _second_ms(clean, work_ms)

    def not_again(*args, **kwargs):
        raise AssertionError("the solutions were computed again")

    monkeypatch.setattr(module, "solutions", not_again)
    monkeypatch.setattr(module, "read_caltable", not_again)
    second = apply_calibration(other, entry["bp_table"], entry["xy_table"])
    assert second.spw_map == first.spw_map and second.flagged_fraction == first.flagged_fraction
    for column in ("CORRECTED_DATA", "FLAG"):
        assert np.array_equal(columns(other, column)[0], columns(work_ms, column)[0]), column
    with pytest.raises(AssertionError, match="computed again"):  # other settings: other solutions
        apply_calibration(other, entry["bp_table"], entry["xy_table"], freq_interp="average")


def test_a_table_edited_in_place_is_not_served_from_the_saved_solutions(clean, work_ms, tmp_path):
    """Same table files, new gains written into them: the key sees the files' change time."""
    entry = clean[1]
    path = tmp_path / "night.B"
    shutil.copytree(entry["bp_table"], path)
    apply_calibration(work_ms, path, entry["xy_table"])
    assert _relative_error(work_ms)[0] < 1e-3
    with tables.table(str(path), readonly=False, ack=False) as tab:
        tab.putcol("CPARAM", 2 * tab.getcol("CPARAM"))
    other = _second_ms(clean, work_ms)
    apply_calibration(other, path, entry["xy_table"])
    corrected, model, flag = columns(other, "CORRECTED_DATA", "MODEL_DATA", "FLAG")
    a1, a2 = columns(other, "ANTENNA1", "ANTENNA2")
    good = ~flag & (a1 != a2)[:, None, None]
    assert np.allclose(corrected[good] * 4, model[good], rtol=1e-3)  # |2 g|^-2: each side's gain doubled
    assert len(list((Path(work_ms).parent / products.CALIBRATION_SOLUTIONS_FOLDER).glob(f"*{SOLUTIONS_SUFFIX}"))) == 2


def test_unreadable_saved_solutions_are_recomputed(clean, work_ms, caplog):
    entry = clean[1]
    apply_calibration(work_ms, entry["bp_table"], entry["xy_table"])
    expected = columns(work_ms, "CORRECTED_DATA", "FLAG")
    (saved,) = (Path(work_ms).parent / products.CALIBRATION_SOLUTIONS_FOLDER).glob(f"*{SOLUTIONS_SUFFIX}")
    saved.write_bytes(saved.read_bytes()[:1000])  # e.g. a disk that lost the end of the file
    other = _second_ms(clean, work_ms)
    apply_calibration(other, entry["bp_table"], entry["xy_table"])
    assert "unreadable saved solutions: recomputing them" in caplog.messages
    assert all(np.array_equal(a, b) for a, b in zip(columns(other, "CORRECTED_DATA", "FLAG"), expected))
    assert saved.stat().st_size > 1000, "saved again, whole"


def test_a_warning_of_the_first_ms_is_logged_for_each_ms(clean, work_ms, tmp_path, caplog):
    """The nearest-window warning is in the log of every MS calibrated with those solutions, naming it."""
    names = clean[1]["antenna_names"]
    neighbour = config.subband_channel_freqs("78MHz", 192)
    bp = write_bandpass_table(tmp_path / "78MHz.B", np.ones((len(names), 192, 2)), neighbour, names)
    xy = write_xyphase_table(tmp_path / "78MHz.Xf", np.zeros(192), neighbour, names)
    apply_calibration(work_ms, bp, xy, spw_tolerance_hz=1e6)
    other = _second_ms(clean, work_ms)
    caplog.clear()
    apply_calibration(other, bp, xy, spw_tolerance_hz=1e6)
    warnings = [r.fields for r in caplog.records if r.getMessage() == "no overlapping cal window: using the nearest"]
    assert [w["table"] for w in warnings] == [str(bp), str(xy)]
    assert all(w["ms"] == str(other) and w["solutions"].endswith(SOLUTIONS_SUFFIX) for w in warnings)


def test_corrected_data_blocks_are_reserved_before_it_is_written(clean, work_ms, monkeypatch):
    """The new column's file gets all its disk blocks at once (a faster write), and holds the same values
    as one written where fallocate is missing."""
    from orca_steps import msio

    with tables.table(str(work_ms), readonly=False, ack=False) as tab:
        assert msio.ensure_column(tab, "CORRECTED_DATA", like="DATA")
        info = tab.getdminfo("CORRECTED_DATA")
        cube = next(iter(info["SPEC"]["HYPERCUBES"].values()))
        size = int(np.prod(-(-cube["CubeShape"] // cube["TileShape"]))) * cube["BucketSize"]
        stat = (Path(work_ms) / f"table.f{info['SEQNR']}_TSM0").stat()
        assert stat.st_size == 0, "casacore still sees an empty file"
        assert stat.st_blocks * 512 >= size, "the tiles' blocks are allocated"
    entry = clean[1]
    apply_calibration(work_ms, entry["bp_table"], entry["xy_table"])
    unreserved = _second_ms(clean, work_ms)
    monkeypatch.setattr(msio.ctypes, "CDLL", lambda name: object())  # a C library without fallocate
    apply_calibration(unreserved, entry["bp_table"], entry["xy_table"])
    for column in ("CORRECTED_DATA", "FLAG"):
        assert np.array_equal(columns(work_ms, column)[0], columns(unreserved, column)[0]), column

"""hot-baselines: injected hot baselines are found by each of orca's two analyses with no false positive;
an antenna with more than 25 % of its baselines hot is flagged whole; exactly those rows are flagged."""
import shutil

import numpy as np
import pytest
from casacore import tables

from orca_steps import msstate, qa_summary
from orca_steps.concat import concatenate_ms
from orca_steps.errors import InputError
from orca_steps.hot_baselines import (amp_vs_uv_outliers, find_hot_baselines, heatmap_outliers, mean_amplitudes,
                                      rolling_envelope)
from orca_steps.msio import antenna_positions

from phase2_data import flag_rows, phase1_outputs

N_ANT = 32
HOT_ANTENNA = 5
SINGLE = [(1, 3), (4, 17)]
ON_HOT_ANTENNA = [(HOT_ANTENNA, k) for k in (0, 6, 7, 8, 9, 11, 12, 20, 22)]  # 9 of 31 baselines: > 25 %
HOT = SINGLE + ON_HOT_ANTENNA
MIN_LENGTH_M = 4 * 299792458.0 / 75.4e6  # 4 wavelengths at the subband's mean frequency


def _key(pairs):
    return sorted((min(p, q), max(p, q)) for p, q in pairs)


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    root = tmp_path_factory.mktemp("hot")
    paths, truth = phase1_outputs(root, flag_bad_antennas=True, n_integrations=4, n_antennas=N_ANT, hot_baselines=HOT)
    bad = set(truth["dead_antennas"] + truth["noisy_antennas"])
    assert not bad & {a for pair in HOT for a in pair}  # Phase 1 flagged those; the hot ones are healthy
    ms = concatenate_ms([str(p) for p in paths], root / "73MHz_concat.ms").concat_ms
    _, itrf = antenna_positions(ms)
    assert all(np.linalg.norm(itrf[p] - itrf[q]) > MIN_LENGTH_M for p, q in HOT)  # none ignored as short
    return root, ms, truth


@pytest.fixture
def ms(hour, tmp_path):
    return shutil.copytree(hour[1], tmp_path / "73MHz_concat.ms")


def test_each_analysis_alone_finds_the_injected_baselines_and_nothing_else(hour):
    _, ms, truth = hour
    assert truth["hot_baselines"] == [list(p) for p in _key(HOT)]
    mean = mean_amplitudes(ms)
    _, itrf = antenna_positions(ms)
    lengths = np.linalg.norm(itrf[:, None] - itrf[None, :], axis=2)
    uv_bad, _, dead, _ = amp_vs_uv_outliers(mean, lengths, MIN_LENGTH_M, sigma=7.0, window=400)
    assert _key(zip(*np.nonzero(uv_bad))) == _key(HOT) and len(dead) == 0
    keep = np.triu(lengths >= MIN_LENGTH_M, k=1)
    hm_bad, _, threshold = heatmap_outliers(mean, keep, sigma=5.0)
    assert _key(zip(*np.nonzero(hm_bad))) == _key(HOT)
    assert np.nanmax(np.where(hm_bad, np.nan, (mean[:, :, 1] + mean[:, :, 2]) / 2)) < threshold < 1000


def test_mean_amplitudes_skip_flagged_samples(hour):
    _, ms, truth = hour
    mean = mean_amplitudes(ms)
    for a in truth["dead_antennas"] + truth["noisy_antennas"]:
        assert np.isnan(mean[a, a + 1:]).all() and np.isnan(mean[:a, a]).all()
    with tables.table(ms, ack=False) as tab:
        rows = (tab.getcol("ANTENNA1") == 1) & (tab.getcol("ANTENNA2") == 3)
        expected = np.abs(tab.getcol("CORRECTED_DATA")[rows]).mean(axis=(0, 1))
    np.testing.assert_allclose(mean[1, 3], expected, rtol=1e-6)


def test_flags_land_on_the_bad_antenna_and_the_other_hot_baselines(hour, ms, tmp_path):
    _, _, truth = hour
    previously = set(truth["dead_antennas"] + truth["noisy_antennas"])
    result = find_hot_baselines(ms, tmp_path / "QA")
    assert _key(result.uv_outliers) == _key(HOT) and result.heatmap_outliers == []  # pass 2 runs without pass 1's
    assert result.bad_antennas == [HOT_ANTENNA]
    assert _key(result.flagged_baselines) == _key(SINGLE)
    _, a1, a2, flagged = flag_rows(ms)
    expected = (np.isin(a1, [HOT_ANTENNA]) | np.isin(a2, [HOT_ANTENNA])
                | np.isin(a1 * 1000 + a2, [p * 1000 + q for p, q in _key(SINGLE)]))
    before = np.isin(a1, list(previously)) | np.isin(a2, list(previously))
    np.testing.assert_array_equal(flagged, expected | before)
    assert result.rows_flagged == expected.sum()
    report = (tmp_path / "QA" / "hot_baselines_report.txt").read_text()
    assert "[bad antennas] 1: 5 (" in report and "[amplitude vs baseline length] 11 outliers" in report
    assert all(open(p, "rb").read(4) == b"\x89PNG" for p in result.plots) and len(result.plots) == 2

    again = find_hot_baselines(ms, tmp_path / "QA")
    assert again.reused and again.bad_antennas == result.bad_antennas
    assert msstate.done_info(ms, "hot-baselines")["result"]["rows_flagged"] == result.rows_flagged


def test_without_hot_baselines_nothing_is_found(tmp_path):
    paths, _ = phase1_outputs(tmp_path, flag_bad_antennas=True, n_integrations=2, n_antennas=N_ANT)
    ms = concatenate_ms([str(p) for p in paths], tmp_path / "73MHz_concat.ms").concat_ms
    result = find_hot_baselines(ms, tmp_path / "QA")
    assert result.uv_outliers == result.heatmap_outliers == result.bad_antennas == [] and result.rows_flagged == 0


def test_rolling_envelope_matches_a_direct_computation():
    rng = np.random.default_rng(3)
    values = np.linspace(10, 20, 300) + rng.normal(0, 1, 300)
    for w in (40, 41):  # orca's 400 is even: the median of the two middle values
        lo = [min(max(i - w // 2, 0), 300 - w) for i in range(300)]
        median = np.array([np.median(values[s:s + w]) for s in lo])
        dev = np.abs(values - median)
        mad = np.array([np.median(dev[s:s + w]) for s in lo])
        np.testing.assert_allclose(rolling_envelope(values, w, 7.0), median + 7 * 1.4826 * mad, rtol=1e-12)
    assert rolling_envelope(values[:5], 400, 7.0).shape == (5,)  # fewer baselines than the window


def test_a_missing_column_is_a_clear_error(hour, tmp_path):
    _, ms, _ = hour
    with pytest.raises(InputError, match="has no MODEL_DATA column to analyse"):
        find_hot_baselines(ms, tmp_path / "QA", column="MODEL_DATA")


ORDERS = ["XX,XY,YX,YY", "XX,YY,XY,YX"]
CROSSTALK = (2, 9)


@pytest.fixture(scope="module")
def both_orders(tmp_path_factory):
    """The same small hour written in each correlation order, with XY/YX crosstalk on one baseline."""
    out = {}
    for order in ORDERS:
        root = tmp_path_factory.mktemp("order")
        paths, _ = phase1_outputs(root, n_integrations=2, n_antennas=16, dead_antennas=0, noisy_antennas=0,
                                  corr_order=order)
        ms = concatenate_ms([str(p) for p in paths], root / "73MHz_concat.ms").concat_ms
        cross_hands = [order.split(",").index(c) for c in ("XY", "YX")]  # where this order stores them
        with tables.table(ms, readonly=False, ack=False) as tab:
            data, a1, a2 = tab.getcol("CORRECTED_DATA"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
            rows = (a1 == CROSSTALK[0]) & (a2 == CROSSTALK[1])
            for c in cross_hands:
                data[rows, :, c] += 300.0
            tab.putcol("CORRECTED_DATA", data)
        out[order] = ms
    return out


def test_correlations_are_read_by_corr_type_in_either_order(both_orders):
    means = [mean_amplitudes(both_orders[o]) for o in ORDERS]
    np.testing.assert_allclose(means[1], means[0], rtol=1e-6)  # the same (XX, XY, YX, YY) table
    assert np.nanmedian(means[0][:, :, 1]) < 0.2 * np.nanmedian(means[0][:, :, 0])  # XY really is cross-hand


@pytest.mark.parametrize("order", ORDERS)
def test_xy_crosstalk_is_seen_in_either_order(both_orders, order, tmp_path):
    ms = shutil.copytree(both_orders[order], tmp_path / "73MHz_concat.ms")
    result = find_hot_baselines(ms, tmp_path / "QA")
    assert CROSSTALK in result.uv_outliers + result.heatmap_outliers
    assert CROSSTALK in result.flagged_baselines and result.bad_antennas == []


def test_no_usable_baseline_is_a_warning_not_a_traceback(both_orders, tmp_path):
    """A fully flagged hour: nothing to fit. The step says so in its result and flags nothing more."""
    ms = shutil.copytree(both_orders[ORDERS[0]], tmp_path / "73MHz_concat.ms")
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        tab.putcol("FLAG", np.ones_like(tab.getcol("FLAG")))
    result = find_hot_baselines(ms, tmp_path / "QA")
    assert result.uv_outliers == result.heatmap_outliers == result.bad_antennas == [] and result.rows_flagged == 0
    assert "no usable baseline" in " ".join(result.warnings)
    assert "no usable baseline" in (tmp_path / "QA" / "hot_baselines_report.txt").read_text()
    page = qa_summary.qa_summary(qa_summary.Options(work_dir=str(tmp_path), hot_baselines=True))
    assert page.steps["hot-baselines"] == "attention" and page.status != "ok"
    assert "no usable baseline" in (tmp_path / "QA" / "index.html").read_text()


def test_a_four_antenna_array_does_not_break_the_step(tmp_path):
    paths, _ = phase1_outputs(tmp_path, n_integrations=1, n_antennas=4, dead_antennas=0, noisy_antennas=0)
    result = find_hot_baselines(paths[0], tmp_path / "QA")
    assert result.bad_antennas == [] and len(result.plots) == 2

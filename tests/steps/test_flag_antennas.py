"""flag-antennas: exactly the requested antennas; CSV by nearest time; autodetect vs injected truth."""
import logging
import shutil
from datetime import timedelta

import numpy as np
import pytest
from casacore import tables

from orca_steps.cli import main
from orca_steps.copy_ms import copy_ms
from orca_steps.errors import InputError
from orca_steps.constants import utc_of
from orca_steps.flag_antennas import flag_antennas
from phase1_data import columns, make_source, tree_hash


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("flag"), n_antennas=32, dead_antennas=3, noisy_antennas=3)


@pytest.fixture()
def ms(source, tmp_path):
    return copy_ms(source[0], tmp_path / "work").ms_path


def _flagged_antennas(ms):
    """Antennas whose every row is fully flagged, and a check that no other row has a flag."""
    flag, flag_row, a1, a2 = columns(ms, "FLAG", "FLAG_ROW", "ANTENNA1", "ANTENNA2")
    full = flag.all(axis=(1, 2))
    assert np.array_equal(full, flag.any(axis=(1, 2))), "rows are flagged whole or not at all"
    assert np.array_equal(full, flag_row)
    ants = set(np.unique(np.concatenate([a1, a2])))
    bad = {a for a in ants if full[(a1 == a) | (a2 == a)].all()}
    expected_rows = np.isin(a1, list(bad)) | np.isin(a2, list(bad))
    assert np.array_equal(full, expected_rows), "exactly the rows touching the bad antennas"
    return sorted(int(a) for a in bad)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture()
def warnings_seen():
    handler = _Records()
    logger = logging.getLogger("orca.flag-antennas")
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def _ms_time(ms):
    return utc_of(columns(ms, "TIME")[0][0])


def test_explicit_list_flags_exactly_those(source, ms):
    before = tree_hash(source[0])
    result = flag_antennas(ms, bad_antennas=[4, 0, 17])
    assert result.flagged == [0, 4, 17] and result.source == "list"
    assert _flagged_antennas(ms) == [0, 4, 17]
    assert tree_hash(source[0]) == before


def test_rerun_is_idempotent(ms):
    flag_antennas(ms, bad_antennas=[5])
    first = columns(ms, "FLAG")[0]
    flag_antennas(ms, bad_antennas=[5])
    assert np.array_equal(columns(ms, "FLAG")[0], first)


def test_csv_uses_the_record_nearest_the_ms_time(ms, tmp_path):
    t = _ms_time(ms)
    csv = tmp_path / "health.csv"
    csv.write_text("timestamp_utc,antennas\n"
                   f"{(t - timedelta(hours=5)).isoformat()},1;2\n"
                   f"{(t + timedelta(minutes=20)).strftime('%Y-%m-%dT%H:%M:%SZ')},3;9;30\n"
                   f"{(t + timedelta(hours=2)).isoformat()},\n")
    result = flag_antennas(ms, flag_csv=str(csv))
    assert result.source == "csv" and result.flagged == [3, 9, 30]
    assert _flagged_antennas(ms) == [3, 9, 30]


def test_autodetect_finds_every_dead_and_noisy_antenna(source, ms):
    truth = source[1]
    result = flag_antennas(ms)
    assert result.source == "autodetect"
    assert result.dead == truth["dead_antennas"]
    assert result.noisy == truth["noisy_antennas"]
    assert _flagged_antennas(ms) == sorted(truth["dead_antennas"] + truth["noisy_antennas"])


@pytest.mark.parametrize("seed", [2, 3])
def test_autodetect_has_no_false_positive_on_other_arrays(tmp_path, seed):
    src, truth = make_source(tmp_path, n_antennas=64, dead_antennas=2, noisy_antennas=4, seed=seed)
    ms = copy_ms(src, tmp_path / "work").ms_path
    result = flag_antennas(ms)
    assert (result.dead, result.noisy) == (truth["dead_antennas"], truth["noisy_antennas"])


def test_missing_csv_falls_back_to_autodetect_loudly(source, ms, tmp_path, warnings_seen):
    result = flag_antennas(ms, flag_csv=str(tmp_path / "absent.csv"))
    assert result.source == "autodetect" and "absent.csv: antenna CSV does not exist" in result.fallback_reason
    assert result.flagged == sorted(source[1]["dead_antennas"] + source[1]["noisy_antennas"])
    assert any(r.levelno == logging.WARNING and "autodetecting" in r.getMessage() for r in warnings_seen)


def test_csv_without_a_near_record_falls_back_or_raises(ms, tmp_path, warnings_seen):
    csv = tmp_path / "old.csv"
    csv.write_text(f"timestamp_utc,antennas\n{(_ms_time(ms) - timedelta(days=3)).isoformat()},1\n")
    result = flag_antennas(ms, flag_csv=str(csv))
    assert result.source == "autodetect" and "no record within 12.0 h" in result.fallback_reason
    assert any(r.levelno == logging.WARNING for r in warnings_seen)
    with pytest.raises(InputError, match=r"old.csv: no record within 1.0 h"):
        flag_antennas(ms, flag_csv=str(csv), csv_tolerance_hours=1.0, on_source_failure="error")


def test_csv_plus_autodetect(source, ms, tmp_path):
    csv = tmp_path / "h.csv"
    csv.write_text(f"timestamp_utc,antennas\n{_ms_time(ms).isoformat()},7\n")
    result = flag_antennas(ms, flag_csv=str(csv), autodetect=True)
    truth = source[1]
    assert result.source == "csv+autodetect"
    assert result.flagged == sorted({7, *truth["dead_antennas"], *truth["noisy_antennas"]})


def test_bad_inputs_are_clear_errors(ms, tmp_path, capsys):
    before = tree_hash(ms)
    with pytest.raises(InputError, match=r"bad antennas \[32\] \(list\) are not correlator indices 0..31"):
        flag_antennas(ms, bad_antennas=[1, 32])
    csv = tmp_path / "broken.csv"
    csv.write_text("timestamp_utc,antennas\n2025-06-15T04:00:00,1;x\n")
    with pytest.raises(InputError, match=r"broken.csv: line 2 is malformed"):
        flag_antennas(ms, flag_csv=str(csv))
    assert tree_hash(ms) == before, "nothing flagged when the input is bad"
    missing = tmp_path / "gone.ms"
    assert main(["flag-antennas", "--ms", str(missing), "--bad_antennas", "[1]"]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("orca-step flag-antennas: error:") and "gone.ms" in last


def test_cli_flags_from_a_list_file(ms, tmp_path, capsys):
    listing = tmp_path / "bad.json"
    listing.write_text("[2, 11]")
    assert main(["flag-antennas", "--ms", ms, "--bad-antennas", f"@{listing}"]) == 0
    out = capsys.readouterr().out
    assert '"flagged":[2,11]' in out and '"source":"list"' in out
    assert _flagged_antennas(ms) == [2, 11]
    shutil.rmtree(ms)


@pytest.mark.parametrize("order", ["XX,XY,YX,YY", "XX,YY,XY,YX"])
def test_a_y_feed_100x_too_hot_is_found_in_either_correlation_order(tmp_path, order):
    """The step finds YY by CORR_TYPE: here the test puts the hot Y feed where the order it chose says."""
    src, _ = make_source(tmp_path, n_antennas=16, dead_antennas=0, noisy_antennas=0, corr_order=order)
    ms = copy_ms(src, tmp_path / "work").ms_path
    hot, yy = 5, order.split(",").index("YY")
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        data, a1, a2 = tab.getcol("DATA"), tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        data[(a1 == hot) & (a2 == hot), :, yy] *= 100
        tab.putcol("DATA", data)
    result = flag_antennas(ms)
    assert (result.dead, result.noisy) == ([], [hot])


def test_correlations_that_are_not_the_four_linear_products_are_refused_before_writing(source, ms):
    with tables.table(str(ms) + "/POLARIZATION", readonly=False, ack=False) as pol:
        pol.putcell("CORR_TYPE", 0, np.array([5, 6, 7, 8], dtype=np.int32))  # RR, RL, LR, LL
    before = tree_hash(ms)
    with pytest.raises(InputError) as err:
        flag_antennas(ms)
    assert "CORR_TYPE [5, 6, 7, 8]" in str(err.value)  # 5, not np.int32(5)
    assert tree_hash(ms) == before


def test_antennas_without_rows_are_absent_not_dead(tmp_path):
    """An ANTENNA table larger than the data (a subarray): rows of 3 and 7 removed; 11 is really dead."""
    src, _ = make_source(tmp_path, n_antennas=16, dead_antennas=0, noisy_antennas=0)
    ms = tmp_path / "subarray.ms"
    with tables.table(str(src), ack=False) as tab:
        kept = tab.query("not (ANTENNA1 in [3, 7] or ANTENNA2 in [3, 7])")
        kept.copy(str(ms), deep=True).close()
        kept.close()
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        a1, a2 = tab.getcol("ANTENNA1"), tab.getcol("ANTENNA2")
        data = tab.getcol("DATA")
        data[(a1 == 11) | (a2 == 11)] = 0.0
        tab.putcol("DATA", data)
        assert tab.nrows() == 14 * 15 // 2 and tables.table(str(ms / "ANTENNA"), ack=False).nrows() == 16
    result = flag_antennas(ms)
    assert (result.absent, result.dead, result.noisy, result.flagged) == ([3, 7], [11], [], [11])

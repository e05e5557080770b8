"""concat: time-sorted rows of every valid input, each keeping its own FIELD; bad inputs dropped with a
reason; a complete concat reused, an incomplete one rebuilt; no valid input is one clear error."""
import json
from pathlib import Path
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from casacore import tables

from orca_steps import msstate
from orca_steps.concat import concatenate_ms
from orca_steps.errors import InputError
from orca_steps.sim import simulate_ms

from phase1_data import tree_hash
from phase2_data import make_phase1_like, phase1_outputs

N_INT, N_ANT = 5, 24
N_BL = N_ANT * (N_ANT + 1) // 2


@pytest.fixture(scope="module")
def hour(tmp_path_factory):
    root = tmp_path_factory.mktemp("hour")
    paths, truth = phase1_outputs(root, n_integrations=N_INT, n_antennas=N_ANT)
    return root, paths, truth


def _col(ms, name, **kw):
    with tables.table(str(ms), ack=False) as tab:
        return tab.getcol(name, **kw)


def test_rows_are_time_sorted_and_every_input_is_kept_with_its_own_field(hour, tmp_path):
    root, paths, truth = hour
    before = [tree_hash(p) for p in paths]
    shuffled = [paths[k] for k in (3, 0, 4, 2, 1)]
    result = concatenate_ms([str(p) for p in shuffled], tmp_path / "73MHz_concat.ms")
    assert not result.reused and result.dropped == []
    assert result.used == [str(p) for p in paths]  # time order, whatever the input order
    time = _col(result.concat_ms, "TIME")
    assert result.n_rows == time.size == N_INT * N_BL
    assert np.all(np.diff(time) >= 0)
    field_id = _col(result.concat_ms, "FIELD_ID")
    with tables.table(f"{result.concat_ms}/FIELD", ack=False) as field:
        phase_dirs = field.getcol("PHASE_DIR")[:, 0, :]
    assert len(phase_dirs) == N_INT
    data = _col(result.concat_ms, "CORRECTED_DATA")
    for k, (path, entry) in enumerate(zip(paths, truth["units"][0]["ms"])):
        rows = slice(k * N_BL, (k + 1) * N_BL)
        assert np.all(time[rows] == entry["time_mjd_s"])
        assert np.all(field_id[rows] == k)
        np.testing.assert_allclose(np.rad2deg(phase_dirs[k]) % 360, entry["phase_centre_deg"], atol=1e-9)
        np.testing.assert_array_equal(data[rows], _col(path, "CORRECTED_DATA"))
    with tables.table(f"{result.concat_ms}/ANTENNA", ack=False) as ant:
        assert list(ant.getcol("NAME")) == truth["antenna_names"]
    assert [tree_hash(p) for p in paths] == before  # inputs are only read
    record = json.loads((tmp_path / "73MHz_concat.json").read_text())
    assert record["n_rows"] == result.n_rows and record["used"] == result.used


def test_unreadable_and_inconsistent_inputs_are_dropped_with_their_reason(hour, tmp_path):
    root, paths, _ = hour
    good = [shutil.copytree(p, tmp_path / p.name) for p in paths[:3]]
    truncated = shutil.copytree(paths[3], tmp_path / "truncated.ms")
    data_file = max((f for f in truncated.glob("table.f*") if f.stat().st_size), key=lambda f: f.stat().st_size)
    with open(data_file, "r+b") as fh:
        fh.truncate(1000)
    no_corrected = tmp_path / "no_corrected.ms"
    simulate_ms(no_corrected, n_antennas=N_ANT, index=3, n_integrations=N_INT)
    other_band = tmp_path / "other_band.ms"
    simulate_ms(other_band, subband="82MHz", n_antennas=N_ANT, index=4, n_integrations=N_INT)
    make_phase1_like(other_band)
    missing = tmp_path / "missing.ms"
    inputs = [*good, truncated, no_corrected, other_band, missing]
    result = concatenate_ms([str(p) for p in inputs], tmp_path / "work" / "73MHz_concat.ms")
    assert result.used == [str(p) for p in good]
    reasons = {d.path: d.reason for d in result.dropped}
    assert set(reasons) == {str(truncated), str(no_corrected), str(other_band), str(missing)}
    assert "unreadable" in reasons[str(truncated)]
    assert "no CORRECTED_DATA (the others have it)" in reasons[str(no_corrected)]
    assert re.fullmatch(r"spectral windows differ: 48 channels 82\.\d+-86\.\d+ MHz, expected 48 channels 73\.\d+-77\.\d+ MHz",
                        reasons[str(other_band)])
    assert "does not exist" in reasons[str(missing)]
    assert result.n_rows == 3 * N_BL == _col(result.concat_ms, "TIME").size
    record = json.loads((tmp_path / "work" / "73MHz_concat.json").read_text())
    assert {d["path"]: d["reason"] for d in record["dropped"]} == reasons


def test_a_repeated_integration_is_dropped_as_overlapping(hour, tmp_path):
    _, paths, _ = hour
    twin = shutil.copytree(paths[1], tmp_path / "copy_of_second.ms")
    result = concatenate_ms([str(p) for p in [*paths[:3], twin]], tmp_path / "73MHz_concat.ms")
    assert len(result.used) == 3 and len(result.dropped) == 1
    assert result.dropped[0].reason.startswith("overlaps in time with")


def test_rows_inside_an_input_are_sorted_by_time_too(hour, tmp_path):
    _, paths, _ = hour
    pair = concatenate_ms([str(p) for p in paths[:2]], tmp_path / "pair" / "73MHz_concat.ms").concat_ms
    backwards = tmp_path / "backwards.ms"
    tables.taql(f"SELECT FROM {pair} ORDERBY TIME DESC, ANTENNA1 ASC, ANTENNA2 ASC GIVING {backwards} AS PLAIN").close()
    assert _col(backwards, "TIME")[0] > _col(backwards, "TIME")[-1]
    result = concatenate_ms([str(backwards), str(paths[2])], tmp_path / "73MHz_concat.ms")
    time = _col(result.concat_ms, "TIME")
    assert np.all(np.diff(time) >= 0) and result.n_rows == 3 * N_BL
    np.testing.assert_array_equal(_col(result.concat_ms, "CORRECTED_DATA", startrow=0, nrow=N_BL),
                                  _col(paths[0], "CORRECTED_DATA"))


def test_a_complete_concat_is_reused_and_an_incomplete_one_rebuilt(hour, tmp_path):
    _, paths, _ = hour
    out = tmp_path / "73MHz_concat.ms"
    inputs = [str(p) for p in paths[:3]]
    first = concatenate_ms(inputs, out)
    with tables.table(str(out), readonly=False, ack=False) as tab:
        tab.putkeyword("TEST_SENTINEL", 1)  # survives only if the MS is kept

    def sentinel():
        with tables.table(str(out), ack=False) as tab:
            return "TEST_SENTINEL" in tab.keywordnames()

    again = concatenate_ms(list(reversed(inputs)), out)
    assert again.reused and again.used == first.used and again.n_rows == first.n_rows and sentinel()

    (tmp_path / "73MHz_concat.json").unlink()  # killed before the record was written
    rebuilt = concatenate_ms(inputs, out)
    assert not rebuilt.reused and not sentinel() and rebuilt.n_rows == first.n_rows

    with tables.table(str(out), readonly=False, ack=False) as tab:  # a later step was killed mid-write
        tab.putkeyword(msstate.IN_PROGRESS, "rephase")
    assert not concatenate_ms(inputs, out).reused
    assert msstate.interrupted_step(out) is None

    more = concatenate_ms([str(p) for p in paths[:4]], out)  # other inputs: rebuilt
    assert not more.reused and more.n_rows == 4 * N_BL
    assert not list(tmp_path.glob(".73MHz_concat.ms.*.tmp")), "no temporary is left"


def test_no_valid_ms_is_one_clear_error(tmp_path):
    broken = tmp_path / "a.ms"
    broken.mkdir()
    with pytest.raises(InputError, match=r"no valid input MS among 2: a.ms: .*not a Measurement Set.*b.ms: .*does not exist"):
        concatenate_ms([str(broken), str(tmp_path / "b.ms")], tmp_path / "73MHz_concat.ms")
    assert not (tmp_path / "73MHz_concat.ms").exists()
    proc = subprocess.run([sys.executable, "-m", "orca_steps.cli", "concat", "--ms_paths", str(broken),
                           "--work_dir", str(tmp_path), "--subband", "73MHz"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    errors = [line for line in proc.stderr.splitlines() if line.startswith("orca-step concat: error:")]
    assert len(errors) == 1 and "no valid input MS" in errors[0]


def test_cli_prints_the_result(hour, tmp_path):
    _, paths, _ = hour
    proc = subprocess.run([sys.executable, "-m", "orca_steps.cli", "concat", "--ms_paths",
                           ",".join(map(str, paths[:2])), "--work_dir", str(tmp_path), "--subband", "73MHz"],
                          capture_output=True, text=True, check=True)
    result = json.loads(proc.stdout)
    assert result["concat_ms"] == str(tmp_path / "73MHz_concat.ms") and result["n_rows"] == 2 * N_BL
    timings = [json.loads(line) for line in (tmp_path / "timings.jsonl").read_text().splitlines()]
    assert timings[-1]["step"] == "concat" and timings[-1]["status"] == "ok"


def _renamed(src, folder, name):
    return shutil.copytree(src, folder / name)


def test_an_ms_whose_name_disagrees_with_its_data_is_dropped_and_the_genuine_one_kept(hour, tmp_path,
                                                                                     tmp_path_factory):
    """A misnamed copy that sorts first (same time, path first) must not push out the genuine MS it duplicates."""
    _, paths, _ = hour
    first = tmp_path_factory.mktemp("aaa")  # sorts before the genuine MS's folder
    assert str(first) < str(paths[0])
    names = [p.name for p in paths]
    assert all(re.match(r"\d{8}_\d{6}_73MHz", n) for n in names)
    stamp = names[2][:15]
    # the data of integration 2 under the name of midnight (a wrong time),
    early = _renamed(paths[2], first, f"{names[0][:9]}000000_73MHz_averaged.ms")
    # and under its own time but another subband's name
    wrong_band = _renamed(paths[2], first, f"{stamp}_78MHz_averaged.ms")
    inputs = [early, wrong_band, *paths[:3]]
    result = concatenate_ms([str(p) for p in inputs], tmp_path / "work" / "73MHz_concat.ms")
    assert result.used == [str(p) for p in paths[:3]]
    reasons = {Path(d.path).name: d.reason for d in result.dropped}
    assert reasons[wrong_band.name] == "name says 78MHz, but its data are 73MHz"
    assert re.fullmatch(r"name says \d{4}-\d\d-\d\d 00:00:00, but its data start at .* UTC", reasons[early.name])


def test_a_name_that_agrees_within_the_integration_is_kept(hour, tmp_path):
    from orca_steps.concat import _inspect, name_disagreement

    _, paths, _ = hour
    assert all(name_disagreement(_inspect(str(p))) is None for p in paths)


def test_a_name_without_the_averaged_suffix_is_read_alike(hour, tmp_path):
    """``YYYYMMDD_HHMMSS_73MHz.ms`` (other writers drop ``_averaged``) names the same subband."""
    from orca_steps.concat import _inspect, name_disagreement

    _, paths, _ = hour
    plain = _renamed(paths[0], tmp_path, paths[0].name.replace("_averaged", ""))
    assert name_disagreement(_inspect(str(plain))) is None
    other = _renamed(paths[0], tmp_path, paths[0].name.replace("73MHz_averaged", "78MHz"))
    assert name_disagreement(_inspect(str(other))) == "name says 78MHz, but its data are 73MHz"


def test_every_column_holds_the_inputs_values_each_small_column_in_its_own_manager(hour, tmp_path):
    """The output's layout differs from the inputs' (one storage manager per small column, so writing one
    column does not rewrite the others); its values do not."""
    root, paths, truth = hour
    result = concatenate_ms([str(p) for p in paths], tmp_path / "73MHz_concat.ms")
    with tables.table(result.concat_ms, ack=False) as out:
        managers = [dm for dm in out.getdminfo().values() if dm["TYPE"] == "StandardStMan"]
        assert managers and all(len(dm["COLUMNS"]) == 1 for dm in managers)
        for k, path in enumerate(paths):
            with tables.table(str(path), ack=False) as src:
                for column in src.colnames():
                    if not src.iscelldefined(column, 0):
                        continue
                    got = out.getcol(column, startrow=k * N_BL, nrow=N_BL)
                    expected = src.getcol(column) + (k if column == "FIELD_ID" else 0)
                    np.testing.assert_array_equal(got, expected, err_msg=f"{column} of input {k}")

"""Errors a user can cause are one line naming the file and the problem, with an exit code the templates do
not retry (2); only faults that may pass (a full disk: 5, a tool crash: 4) get a retried code."""
import errno
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from casacore import tables

from orca_steps import archive
from orca_steps.cli import main
from orca_steps.copy_ms import copy_ms
from orca_steps.errors import (NOT_RETRIED_EXIT_CODES, InputError, ToolFailedError, TransientError,
                               UnexpectedError)
from orca_steps.tools import failure_cause, run_tool
from phase1_data import make_source, tree_hash


@pytest.fixture(autouse=True)
def log_to_this_tests_stderr():
    """orca-step's log handler is set up once per process: let it attach to the stderr capsys gives this test."""
    logging.getLogger("orca").handlers.clear()
    yield
    logging.getLogger("orca").handlers.clear()


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return make_source(tmp_path_factory.mktemp("errors"), n_antennas=12)


@pytest.fixture()
def ms(source, tmp_path):
    return Path(copy_ms(source[0], tmp_path / "work").ms_path)


def refs(source):
    folder = source[0].parent / "refs"
    return {"bp_table": str(next(folder.glob("*.B.flagged"))), "xy_table": str(next(folder.glob("*.Xf")))}


def one_line_error(capsys, step: str) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if not line.startswith("{")]
    assert len(err) == 1, err  # one line besides the JSON log lines: no traceback
    assert err[0].startswith(f"orca-step {step}: error: ")
    return err[0]


def truncate(path, fraction=0.5):
    with open(path, "r+b") as fh:
        fh.truncate(int(path.stat().st_size * fraction))


def two_correlation_copy(ms, dest):
    """``ms`` with only XX and YY (a shape real 2-correlation data come in): columns rebuilt (48, 2)."""
    shutil.copytree(ms, dest)
    with tables.table(str(dest), readonly=False, ack=False) as tab:
        data, flag = tab.getcol("DATA")[:, :, [0, 3]], tab.getcol("FLAG")[:, :, [0, 3]]
        tab.removecols(["DATA", "FLAG"])
        tab.addcols(tables.maketabdesc([tables.makearrcoldesc("DATA", 0j, shape=list(data.shape[1:]),
                                                              valuetype="complex"),
                                        tables.makearrcoldesc("FLAG", False, shape=list(flag.shape[1:]))]))
        tab.putcol("DATA", data)
        tab.putcol("FLAG", flag)
    with tables.table(str(dest / "POLARIZATION"), readonly=False, ack=False) as pol:
        pol.removecols(["CORR_TYPE", "CORR_PRODUCT"])
        pol.addcols(tables.maketabdesc([tables.makearrcoldesc("CORR_TYPE", 0, ndim=1),
                                        tables.makearrcoldesc("CORR_PRODUCT", 0, ndim=2)]))
        pol.putcell("CORR_TYPE", 0, np.array([9, 12]))
        pol.putcell("CORR_PRODUCT", 0, np.array([[0, 1], [0, 1]]))
        pol.putcell("NUM_CORR", 0, 2)
    return dest


def test_exit_codes_of_user_errors_are_the_ones_templates_do_not_retry():
    assert InputError.exit_code in NOT_RETRIED_EXIT_CODES and UnexpectedError.exit_code in NOT_RETRIED_EXIT_CODES
    assert ToolFailedError.exit_code not in NOT_RETRIED_EXIT_CODES
    assert TransientError.exit_code not in NOT_RETRIED_EXIT_CODES


@pytest.mark.parametrize("table_file", ["table.f0", "table.dat", "table.f1_TSM0"])
def test_a_truncated_table_file_is_one_line_exit_2(ms, capsys, table_file):
    truncate(ms / table_file)
    code = main(["flag-antennas", "--ms", str(ms)])
    line = one_line_error(capsys, "flag-antennas")
    assert code == 2 and str(ms) in line


def test_a_truncated_table_in_a_real_process_is_one_line_exit_2(ms):
    """The same through the installed entry point, as a pod runs it: the exit code Argo sees."""
    truncate(ms / "table.f0")
    proc = subprocess.run([sys.executable, "-m", "orca_steps.cli", "flag-antennas", "--ms", str(ms)],
                          capture_output=True, text=True)
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert proc.returncode == 2 and len(lines) == 1 and str(ms) in lines[0], proc.stderr


def test_an_ms_without_data_is_one_line_naming_it(source, ms, capsys):
    with tables.table(str(ms), readonly=False, ack=False) as tab:
        tab.removecols(["DATA"])
    assert main(["flag-antennas", "--ms", str(ms)]) == 2
    assert one_line_error(capsys, "flag-antennas").endswith(f"{ms}: no DATA column in this MS")
    assert main(["apply-calibration", "--ms", str(ms), *sum(([f"--{k}", v] for k, v in refs(source).items()), [])]) == 2
    line = one_line_error(capsys, "apply-calibration")
    assert str(ms) in line and "DATA" in line


def test_a_two_correlation_ms_in_flag_antennas_is_refused_in_one_line(ms, tmp_path, capsys):
    two = two_correlation_copy(ms, tmp_path / "two.ms")
    before = tree_hash(two)
    assert main(["flag-antennas", "--ms", str(two)]) == 2
    line = one_line_error(capsys, "flag-antennas")
    assert str(two) in line and "[9, 12]" in line
    assert tree_hash(two) == before


def test_a_non_utf8_flag_csv_names_the_csv(ms, tmp_path, capsys):
    csv = tmp_path / "health.csv"
    csv.write_bytes(b"timestamp_utc,antennas\n2025-06-15T04:00:00Z,3;\xff17\n")
    before = tree_hash(ms)
    assert main(["flag-antennas", "--ms", str(ms), "--flag_csv", str(csv)]) == 2
    assert f"{csv}: antenna CSV is not UTF-8 text" in one_line_error(capsys, "flag-antennas")
    assert tree_hash(ms) == before


def test_a_non_utf8_sky_model_names_the_model(source, ms, tmp_path, capsys):
    assert main(["apply-calibration", "--ms", str(ms), *sum(([f"--{k}", v] for k, v in refs(source).items()), [])]) == 0
    capsys.readouterr()
    sky = tmp_path / "sources.json"
    sky.write_bytes(b'[{"name": "Cyg\xff A"}]')
    assert main(["peel", "--ms", str(ms), "--sky_model", str(sky), "--peel_sky", "true"]) == 2
    assert f"{sky}: sky model is not UTF-8 text" in one_line_error(capsys, "peel")


def test_a_full_disk_is_a_retried_exit_code_naming_the_file(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "product.txt").write_text("x")

    def full(src, dest):
        raise OSError(errno.ENOSPC, "No space left on device", str(dest))

    monkeypatch.setattr(archive, "copy_file", full)
    code = main(["archive", "--work_dir", str(work), "--archive_root", str(tmp_path / "arch"), "--subband", "73MHz",
                 "--lst_label", "14h", "--obs_date", "2025-06-15", "--run_label", "r1"])
    line = one_line_error(capsys, "archive")
    assert code == TransientError.exit_code and "No space left on device (ENOSPC)" in line and "product.txt" in line
    assert not list((tmp_path / "arch").rglob("*.partial-*")), "no partial archive left behind"


def test_any_other_os_error_is_final(tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "product.txt").write_text("x")

    def denied(src, dest):
        raise PermissionError(errno.EACCES, "Permission denied", str(dest))

    monkeypatch.setattr(archive, "copy_file", denied)
    code = main(["archive", "--work_dir", str(work), "--archive_root", str(tmp_path / "arch"), "--subband", "73MHz",
                 "--lst_label", "14h", "--obs_date", "2025-06-15", "--run_label", "r1"])
    assert code == 2 and "Permission denied (EACCES)" in one_line_error(capsys, "archive")


def test_a_tool_failure_puts_the_cause_first_in_one_line(ms, tmp_path):
    """Real wsclean on a corrupt MS: its banner and progress come first, the cause near the end."""
    truncate(ms / "table.f1_TSM0", 0.1)
    log = tmp_path / "wsclean.log"
    with pytest.raises(ToolFailedError) as caught:
        run_tool(["wsclean", "-size", "64", "64", "-scale", "1", "-name", str(tmp_path / "img"), str(ms)], log_file=log)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("wsclean failed: ")
    assert "WSClean version" not in message and f"full output in {log}" in message
    assert failure_cause(log.read_text()) in message


def test_failure_cause_reads_like_the_tools_own_error():
    aoflagger = ("AOFlagger 3.1 (2021-03-03) command line application\nAuthor: Andre Offringa\n\n"
                 "Starting strategy on 2026-Dec-06 05:19:58\n"
                 "...broken.lua:2: attempt to call a nil value (method 'no_such_method')\n"
                 "An unhandled exception occured: the RFI strategy will not continue.\n"
                 "If you think this is a bug, please contact offringa@gmail.com\n")
    assert failure_cause(aoflagger) == "...broken.lua:2: attempt to call a nil value (method 'no_such_method')"
    wsclean = ("WSClean version 3.1.0\nWARNING: no WEIGHT_SPECTRUM column; will use WEIGHT.\n"
               "+ + + + + +\n+ An exception occured:\n+ >>> BucketCache::getBucket: bucket 0 exceeds nr of buckets\n"
               "+ + + + + +\n")
    assert failure_cause(wsclean) == "An exception occured: BucketCache::getBucket: bucket 0 exceeds nr of buckets"
    assert failure_cause("") == "no output" and failure_cause("a\nb\n") == "b"

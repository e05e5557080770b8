"""The orca-step CLI: booleans, lists, @file, result file, and errors as one line plus a non-zero exit."""
import json
import subprocess
import sys

import pytest

from orca_steps import flag_antennas, prepare_ms, stage_refs
from orca_steps.cli import main, parse_list, parse_options
from orca_steps.errors import InputError

REQUIRED = {"src_ms": "a.ms", "nvme_work_dir": "/w", "bp_table": "b", "xy_table": "x"}


@pytest.mark.parametrize("text,value", [("true", True), ("True", True), ("1", True), ("false", False),
                                        ("FALSE", False), ("0", False)])
def test_booleans_take_a_value(text, value):
    options = parse_options(prepare_ms.Options, {**REQUIRED, "peel_sky": text, "peel_rfi": None})
    assert options.peel_sky is value and options.peel_rfi is False


def test_a_bad_boolean_is_an_input_error_naming_the_flag():
    with pytest.raises(InputError, match="--peel_sky"):
        parse_options(prepare_ms.Options, {**REQUIRED, "peel_sky": "maybe"})


@pytest.mark.parametrize("text,value", [("[1, 2, 3]", [1, 2, 3]), ("1,2,3", [1, 2, 3]), (" 4 , 5 ", [4, 5]),
                                        ("", []), ("[]", [])])
def test_lists_take_json_or_commas(text, value):
    options = parse_options(flag_antennas.Options, {"ms": "x.ms", "bad_antennas": text})
    assert options.bad_antennas == value


def test_lists_from_a_file(tmp_path):
    listing = tmp_path / "refs.json"
    listing.write_text(json.dumps(["/a/b.B", "/a/c.Xf"]))
    assert parse_list(f"@{listing}") == ["/a/b.B", "/a/c.Xf"]
    with pytest.raises(InputError, match="nolist.json: list file does not exist"):
        parse_list(f"@{tmp_path / 'nolist.json'}")
    with pytest.raises(InputError, match="not a valid JSON list"):
        parse_list("[1, 2")


def test_a_list_of_the_wrong_type_names_the_flag():
    with pytest.raises(InputError, match="--bad_antennas"):
        parse_options(flag_antennas.Options, {"ms": "x.ms", "bad_antennas": "one,two"})


def test_result_is_one_json_line_and_also_written_to_a_file(tmp_path, capsys):
    ref = tmp_path / "sources.json"
    ref.write_text("[]")
    result_file = tmp_path / "out" / "result.json"
    code = main(["stage-refs", "--nvme-work-dir", str(tmp_path / "w"), "--refs", str(ref),
                 "--result-file", str(result_file)])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    parsed = stage_refs.Result.model_validate_json(out[0])
    assert parsed.staged == [str(tmp_path / "w" / "refs" / "sources.json")]
    assert json.loads(result_file.read_text()) == json.loads(out[0])


def test_errors_are_one_line_and_a_nonzero_exit_from_the_real_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "orca_steps.cli", "copy", "--src_ms", str(tmp_path / "x.ms"),
                           "--nvme_work_dir", str(tmp_path / "w")], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stdout == ""
    human = [line for line in proc.stderr.splitlines() if not line.startswith("{")]
    assert human == [f"orca-step copy: error: {tmp_path / 'x.ms'}: Measurement Set does not exist "
                     "(neither x.ms nor x.ms.tar)"]
    logged = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    assert any(entry["level"] == "error" and entry.get("error") == "InputError" for entry in logged)


def test_unknown_step_and_missing_required_option(capsys):
    assert main(["no-such-step"]) == 2
    assert "unknown step 'no-such-step'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["copy", "--src_ms", "a.ms"])
    assert exit_info.value.code == 2
    assert "--nvme_work_dir" in capsys.readouterr().err

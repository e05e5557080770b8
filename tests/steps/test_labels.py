"""Labels and dates that become path parts are refused when hostile, by every step that takes them."""
import os

import pytest

from orca_steps import config, labels
from orca_steps.cli import main
from orca_steps.errors import InputError

HOSTILE = [("run_label", "../../../escaped"), ("run_label", "a/b"), ("run_label", "a b"), ("run_label", ".."),
           ("run_label", "x..y"), ("run_label", ""), ("lst_label", "25h"), ("lst_label", "-1h"),
           ("lst_label", "7h"), ("lst_label", "../14h"), ("obs_date", "2025-13-40"), ("obs_date", "20250615"),
           ("obs_date", "2025-W24-1"), ("obs_date", "../2025-06-15"), ("subband", "74MHz"), ("subband", "../73MHz")]
GOOD = {"subband": "73MHz", "lst_label": "14h", "obs_date": "2025-06-15", "run_label": "nightly-2025.06"}


def test_good_labels_pass_unchanged():
    assert labels.check_run_label(GOOD["run_label"]) == GOOD["run_label"]
    assert labels.check_obs_date("2024-02-29") == "2024-02-29"
    assert labels.check_lst_label("00h") == "00h" and labels.check_lst_label("23h") == "23h"
    assert config.archive_dir("/arch", "14h", "2025-06-15", "r1", "73MHz") == "/arch/14h/2025-06-15/r1/73MHz"


@pytest.mark.parametrize("field,value", HOSTILE)
def test_unit_paths_refuse_hostile_labels(field, value):
    parts = {**GOOD, field: value}
    with pytest.raises(InputError, match="malformed"):
        config.archive_dir("/arch", parts["lst_label"], parts["obs_date"], parts["run_label"], parts["subband"])


def test_path_under_refuses_dotdot_and_links_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "out").symlink_to(tmp_path)
    assert labels.path_under(root, "a", "b") == root / "a" / "b"
    for parts in (("..", "x"), ("a", "..", "..", "x"), ("out", "x"), ("/etc",), (".",)):
        with pytest.raises(InputError, match="leaves its root"):
            labels.path_under(root, *parts)


@pytest.mark.parametrize("field,value", HOSTILE)
def test_archive_step_refuses_hostile_labels_in_one_line_writing_nothing(tmp_path, capsys, field, value):
    """The high-severity case: archive's path came from raw labels (../../../escaped wrote outside the root)."""
    work = tmp_path / "fast" / "w"
    work.mkdir(parents=True)
    (work / "product.txt").write_text("x")
    root = tmp_path / "deep" / "er" / "arch"
    args = {**GOOD, field: value}
    argv = ["archive", "--work_dir", str(work), "--archive_root", str(root)]
    for name, text in args.items():
        argv.append(f"--{name}={text}")
    assert main(argv) == InputError.exit_code
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("orca-step archive: error: ") and field.split("_")[0] in err[-1].lower()
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != work / "product.txt"]
    assert written == [] and not root.exists()


@pytest.mark.parametrize("field,value", [("run_label", "../../x"), ("obs_date", "2025-13-40"), ("lst_label", "25h")])
def test_process_subband_refuses_hostile_labels_before_any_work(tmp_path, capsys, field, value):
    work = tmp_path / "w"
    work.mkdir()
    argv = ["process-subband", "--work_dir", str(work), "--ms_paths", "[]"]
    for name, text in {**GOOD, field: value}.items():
        argv.append(f"--{name}={text}")
    assert main(argv) == InputError.exit_code
    assert "malformed" in capsys.readouterr().err
    assert os.listdir(work) == []


WRITE_FOLDERS = [("copy", "nvme_work_dir"), ("stage-refs", "nvme_work_dir"), ("prepare-ms", "nvme_work_dir"),
                 ("archive", "work_dir"), ("archive", "archive_root"), ("process-subband", "work_dir")]
BAD_FOLDERS = ["relative/dir", "", "/fast/../../etc", "/fast/a/../../x"]


# An empty archive_root means the site's (Argo passes an unset optional as ''): not a bad folder.
@pytest.mark.parametrize("step,flag,value", [(s, f, v) for s, f in WRITE_FOLDERS for v in BAD_FOLDERS
                                             if (f, v) != ("archive_root", "")])
def test_folders_written_into_are_absolute_without_dotdot(tmp_path, capsys, step, flag, value):
    argv = {"copy": ["--src_ms", "/l/x.ms", "--nvme_work_dir", "/fast/w"],
            "stage-refs": ["--nvme_work_dir", "/fast/w", "--refs", "[]"],
            "prepare-ms": ["--src_ms", "/l/x.ms", "--nvme_work_dir", "/fast/w", "--bp_table", "b", "--xy_table", "x"],
            "archive": ["--work_dir", "/fast/w", "--archive_root", "/lustre/a"] + [f"--{k}={v}" for k, v in GOOD.items()],
            "process-subband": ["--work_dir", "/fast/w", "--ms_paths", "[]"] + [f"--{k}={v}" for k, v in GOOD.items()],
            }[step]
    argv[argv.index(f"--{flag}") + 1] = value
    assert main([step, *argv]) == InputError.exit_code
    assert "expected an absolute path without '..'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("argv,problem", [
    (["plan-unit", "--nvme_work_dir", "../x"], "nvme_work_dir '../x' is malformed"),
    (["plan-unit", "--list_dir", "/runs/../../etc"], "list_dir '/runs/../../etc' is malformed"),
    (["discover", "--list_dir", "units"], "list_dir 'units' is malformed"),
])
def test_night_steps_refuse_folders_that_could_leave_their_root(capsys, argv, problem):
    labels_ = ["--subband", "73MHz", "--lst_label", "14h"] if argv[0] == "plan-unit" else ["--subbands", "73MHz"]
    assert main([*argv, *labels_, "--obs_date", "2025-06-15", "--run_label", "r1"]) == InputError.exit_code
    assert problem in capsys.readouterr().err


def test_run_report_refuses_a_workflow_name_that_leaves_the_runs_root(tmp_path, capsys):
    assert main(["run-report", "--workflow", "../../x", "--run_label", "r1", "--status", "Failed"]) == 2
    assert "workflow '../../x' is malformed" in capsys.readouterr().err

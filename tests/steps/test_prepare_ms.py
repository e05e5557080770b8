"""prepare-ms: Phase 1 for one MS, from a Lustre .ms.tar to a calibrated, flagged MS on NVMe."""
import json
from pathlib import Path

import numpy as np
import pytest

from orca_steps.cli import main
from orca_steps.errors import InputError
from orca_steps.prepare_ms import phase1_marker, prepare_ms
from phase1_data import columns, make_source, tar_copy, tree_hash


@pytest.fixture(scope="module")
def lustre(tmp_path_factory):
    """A noise-free MS (with truth in MODEL_DATA), tarred as on Lustre, and its cal tables.

    The tables are on the MS grid, where CASA's interpolation returns each channel's own solution.
    """
    ms, entry = make_source(tmp_path_factory.mktemp("prep"), noise_jy=0.0, write_model=True, caltable_channels=48)
    return tar_copy(ms), entry


def _check_prepared(result, entry):
    ms = result.ms_path
    corrected, model, flag, a1, a2 = columns(ms, "CORRECTED_DATA", "MODEL_DATA", "FLAG", "ANTENNA1", "ANTENNA2")
    bad = sorted(entry["dead_antennas"] + entry["noisy_antennas"])
    assert result.flag_antennas.flagged == bad and result.flag_antennas.source == "autodetect"
    rows_bad = np.isin(a1, bad) | np.isin(a2, bad)
    assert flag[rows_bad].all() and not flag[~rows_bad].any()
    good = ~flag & (a1 != a2)[:, None, None]
    assert np.max(np.abs(corrected[good] - model[good]) / np.abs(model[good])) < 1e-5


def test_prepare_from_tar(lustre, tmp_path):
    tar, entry = lustre
    hashes = {p: tree_hash(p) for p in (tar, entry["bp_table"], entry["xy_table"])}
    work = tmp_path / "fast" / "14h" / "2025-06-15" / "run" / "73MHz"
    result = prepare_ms(str(tar), str(work), entry["bp_table"], entry["xy_table"], subband="73MHz")
    assert result.ms_path == str(work / tar.name[: -len(".tar")])
    assert result.copy_ms.source == str(tar)
    assert result.stage_refs.staged == [str(work / "refs" / "73MHz.bandpass.B.flagged"),
                                       str(work / "refs" / "73MHz.xyphase.Xf")]
    assert result.peel is None
    _check_prepared(result, entry)
    timings = [json.loads(line)["step"] for line in (work / "timings.jsonl").read_text().splitlines()]
    assert timings == ["stage-refs", "copy", "flag-antennas", "apply-calibration"]
    assert json.loads(phase1_marker(work, Path(result.ms_path).name).read_text())["ms_path"] == result.ms_path
    again = prepare_ms(str(tar), str(work), entry["bp_table"], entry["xy_table"])
    assert again.copy_ms.reused and again.stage_refs.copied == []
    _check_prepared(again, entry)
    assert {p: tree_hash(p) for p in hashes} == hashes, "Lustre inputs byte-identical"


def test_cli_runs_phase1_with_seed_parameter_names(lustre, tmp_path, capsys):
    tar, entry = lustre
    work = tmp_path / "work"
    code = main(["prepare-ms", "--src_ms", str(tar), "--nvme_work_dir", str(work), "--bp_table", entry["bp_table"],
                 "--xy_table", entry["xy_table"], "--peel_sky", "false", "--peel-rfi", "false",
                 "--bad_antennas", ",".join(map(str, entry["dead_antennas"]))])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["ms_path"] == str(work / tar.name[: -len(".tar")])
    assert result["flag_antennas"]["flagged"] == entry["dead_antennas"]
    assert result["flag_antennas"]["source"] == "list"
    steps = [json.loads(line)["step"] for line in (work / "timings.jsonl").read_text().splitlines()]
    assert steps == ["stage-refs", "copy", "flag-antennas", "apply-calibration", "prepare-ms"]


def test_bad_inputs_exit_nonzero_and_leave_lustre_alone(lustre, tmp_path, capsys):
    tar, entry = lustre
    before = tree_hash(tar)
    base = ["--nvme_work_dir", str(tmp_path / "w"), "--bp_table", entry["bp_table"], "--xy_table", entry["xy_table"]]
    cases = {
        "missing": (["--src_ms", str(tmp_path / "20250615_000000_73MHz_averaged.ms")], "does not exist"),
        "subband": (["--src_ms", str(tar), "--subband", "73 MHz"], "subband label '73 MHz' is malformed"),
        "peel": (["--src_ms", str(tar), "--peel_sky", "true"], "peel_sky is set but no sky_model"),
        "boolean": (["--src_ms", str(tar), "--peel_sky", "maybe"], "--peel_sky"),
    }
    for name, (args, message) in cases.items():
        code = main(["prepare-ms", *args, *base])
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert code == 2, name
        assert last.startswith("orca-step prepare-ms: error:") and message in last, (name, last)
    assert tree_hash(tar) == before
    with pytest.raises(InputError, match="peel_rfi is set but no rfi_model"):
        prepare_ms(str(tar), str(tmp_path / "w"), entry["bp_table"], entry["xy_table"], peel_rfi=True)


def test_prepare_with_peeling_forwards_the_peel_options(tmp_path):
    """peel_sky/peel_rfi run the peel step on the staged models, with orca's peel options passed through."""
    ms, entry = make_source(tmp_path, n_antennas=24, noise_jy=1.0)
    refs = ms.parent / "refs"
    work = tmp_path / "fast" / "73MHz"
    result = prepare_ms(str(ms), str(work), entry["bp_table"], entry["xy_table"], peel_sky=True, peel_rfi=True,
                        sky_model=str(refs / "sources.json"), rfi_model=str(refs / "rfi_ovro.json"),
                        peel_maxiter=2, peeliter=1, save_peel_solutions=True)
    peeled = {s["name"]: s for s in result.peel["peeled"]}
    assert {"Cyg A", "Cas A", "Vir A", "OVRO-NW-emitter"} <= set(peeled)
    assert all(s["iterations"] <= 2 for s in peeled.values()), "peel_maxiter reaches the solver"
    solutions = np.load(work / (ms.name[: -len(".ms")] + ".peel_solutions.npz"))
    assert solutions["gains"].shape[0] == len(peeled)
    steps = [json.loads(line)["step"] for line in (work / "timings.jsonl").read_text().splitlines()]
    assert steps[-1] == "peel"
    assert str(work / "refs" / "sources.json") in result.stage_refs.staged

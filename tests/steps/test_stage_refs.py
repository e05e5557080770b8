"""stage-refs: each reference is copied once per work dir, even when 8 pods race."""
import multiprocessing as mp
import os

import numpy as np
import pytest

from orca_steps.cli import main
from orca_steps.errors import InputError
from orca_steps.stage_refs import stage_refs
from phase1_data import tree_hash


@pytest.fixture()
def references(tmp_path):
    """A 'Lustre' folder with a big file, a small file and a table-like directory."""
    lustre = tmp_path / "lustre"
    table = lustre / "73MHz.bandpass.B.flagged"
    table.mkdir(parents=True)
    rng = np.random.default_rng(0)
    (table / "table.dat").write_bytes(rng.bytes(2000))
    (table / "table.f0").write_bytes(rng.bytes(8 * 2**20))  # big enough that copies overlap in time
    (lustre / "sources.json").write_text('[{"name": "CygA"}]\n')
    (lustre / "LWA_opt_GH1.lua").write_text("-- strategy\n")
    return [str(table), str(lustre / "sources.json"), str(lustre / "LWA_opt_GH1.lua")]


def _race(args):
    barrier, work_dir, refs = args
    barrier.wait()
    return stage_refs(work_dir, refs).model_dump()


def test_eight_racing_pods_stage_each_reference_once(tmp_path, references):
    before = {r: tree_hash(r) for r in references}
    work = tmp_path / "fast" / "14h" / "2025-06-15" / "run" / "73MHz"
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(8)
        with ctx.Pool(8) as pool:
            results = pool.map(_race, [(barrier, str(work), references)] * 8)
    copied = [path for r in results for path in r["copied"]]
    staged = results[0]["staged"]
    assert sorted(copied) == sorted(staged), "every reference copied exactly once across the 8 pods"
    assert all(r["staged"] == staged for r in results)
    assert staged == [str(work / "refs" / os.path.basename(r)) for r in references]
    for src, dest in zip(references, staged):
        assert _same_content(src, dest)
    assert {r: tree_hash(r) for r in references} == before, "sources untouched"
    assert sorted(p.name for p in (work / "refs").iterdir()) == sorted(
        [".stage.lock"] + [os.path.basename(r) for r in references]), "no temporary left behind"


def _same_content(src, dest):
    from pathlib import Path
    src, dest = Path(src), Path(dest)
    if src.is_file():
        return src.read_bytes() == dest.read_bytes()
    return all((dest / f.relative_to(src)).read_bytes() == f.read_bytes() for f in src.rglob("*") if f.is_file())


def test_second_call_copies_nothing_and_new_references_are_added(tmp_path, references):
    first = stage_refs(tmp_path / "work", references[:2])
    assert len(first.copied) == 2
    again = stage_refs(tmp_path / "work", references[:2])
    assert again.copied == [] and again.staged == first.staged
    more = stage_refs(tmp_path / "work", references)
    assert more.copied == [str(tmp_path / "work" / "refs" / "LWA_opt_GH1.lua")]


def test_leftover_of_a_killed_pod_is_cleaned(tmp_path, references):
    refs_dir = tmp_path / "work" / "refs"
    refs_dir.mkdir(parents=True)
    (refs_dir / ".sources.json.12345-deadbeef.tmp").write_text("half a fi")
    result = stage_refs(tmp_path / "work", references)
    assert len(result.copied) == 3
    assert not list(refs_dir.glob(".*.tmp"))


def test_missing_reference_is_a_clear_error_and_cli_exits_nonzero(tmp_path, references, capsys):
    missing = str(tmp_path / "lustre" / "nope.Xf")
    with pytest.raises(InputError, match=r"nope.Xf: reference file does not exist"):
        stage_refs(tmp_path / "work", references + [missing])
    assert not (tmp_path / "work" / "refs").exists(), "nothing staged when an input is missing"
    code = main(["stage-refs", "--nvme_work_dir", str(tmp_path / "work"), "--refs", f"{references[0]},{missing}"])
    assert code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("orca-step stage-refs: error:") and "nope.Xf" in err[-1]


def test_two_references_with_one_name_are_refused(tmp_path, references):
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "sources.json").write_text("[]")
    with pytest.raises(InputError, match="share the file name sources.json"):
        stage_refs(tmp_path / "work", references + [str(other / "sources.json")])

"""copy: .ms and .ms.tar to the work dir; reuse, replace partial copies; clear errors; source untouched."""
import shutil

import numpy as np
import pytest

from orca_steps.cli import main
from orca_steps.copy_ms import copy_ms
from orca_steps.errors import InputError
from phase1_data import columns, make_source, tar_copy, tree_hash


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    ms, _ = make_source(tmp_path_factory.mktemp("copy"), n_antennas=12)
    return ms


def test_copies_an_ms_that_opens_with_the_same_data(source, tmp_path):
    before = tree_hash(source)
    result = copy_ms(source, tmp_path / "work")
    assert result.ms_path == str(tmp_path / "work" / source.name)
    assert not result.reused and result.source == str(source)
    (data, a1), (src_data, src_a1) = columns(result.ms_path, "DATA", "ANTENNA1"), columns(source, "DATA", "ANTENNA1")
    assert np.array_equal(data, src_data) and np.array_equal(a1, src_a1)
    assert tree_hash(source) == before
    assert [p.name for p in (tmp_path / "work").iterdir()] == [source.name], "no temporary left behind"


def test_tar_is_preferred_and_untarred(source, tmp_path):
    lustre = tmp_path / "lustre"
    lustre.mkdir()
    tar = tar_copy(source, lustre / (source.name + ".tar"))
    shutil.copytree(source, lustre / source.name)
    hashes = {p: tree_hash(p) for p in (tar, lustre / source.name)}
    for given in (lustre / source.name, tar):
        work = tmp_path / f"work-{given.suffix}"
        result = copy_ms(given, work)
        assert result.source == str(tar), "the tar wins when both exist"
        assert np.array_equal(columns(result.ms_path, "DATA")[0], columns(source, "DATA")[0])
    assert {p: tree_hash(p) for p in hashes} == hashes


def test_rerun_reuses_a_complete_copy_and_replaces_a_partial_one(source, tmp_path):
    work = tmp_path / "work"
    first = copy_ms(source, work)
    again = copy_ms(source, work)
    assert again.reused and again.ms_path == first.ms_path
    shutil.rmtree(first.ms_path)
    partial = work / f".{source.name}.partial-deadbeef"
    shutil.copytree(source / "ANTENNA", partial / source.name / "ANTENNA")  # a pod killed mid-copy
    result = copy_ms(source, work)
    assert not result.reused
    assert not partial.exists()
    assert np.array_equal(columns(result.ms_path, "DATA")[0], columns(source, "DATA")[0])


def test_missing_ms(tmp_path, capsys):
    with pytest.raises(InputError, match=r"nothere.ms: Measurement Set does not exist"):
        copy_ms(tmp_path / "nothere.ms", tmp_path / "work")
    assert main(["copy", "--src_ms", str(tmp_path / "nothere.ms"), "--nvme_work_dir", str(tmp_path / "work")]) != 0
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("orca-step copy: error:") and "nothere.ms" in last
    assert not (tmp_path / "work").exists()


def test_directory_that_is_not_an_ms(tmp_path):
    fake = tmp_path / "lustre" / "fake.ms"
    fake.mkdir(parents=True)
    (fake / "notes.txt").write_text("not a table")
    before = tree_hash(fake)
    with pytest.raises(InputError, match=r"fake.ms: not a Measurement Set \(no table.dat\)"):
        copy_ms(fake, tmp_path / "work")
    assert tree_hash(fake) == before
    assert not (tmp_path / "work" / "fake.ms").exists()


def test_truncated_tar(source, tmp_path, capsys):
    tar = tar_copy(source, tmp_path / (source.name + ".tar"))
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    before = tree_hash(tar)
    with pytest.raises(InputError, match=r"\.ms\.tar: tar is truncated or unreadable"):
        copy_ms(tar, tmp_path / "work")
    assert tree_hash(tar) == before
    assert list((tmp_path / "work").iterdir()) == [], "the partial untar is removed"
    assert main(["copy", "--src_ms", str(tar), "--nvme_work_dir", str(tmp_path / "work")]) == 2
    assert "tar is truncated" in capsys.readouterr().err.strip().splitlines()[-1]


def test_tar_holding_something_else(tmp_path):
    other = tmp_path / "other.ms"
    other.mkdir()
    (other / "x").write_text("x")
    tar = tar_copy(other, tmp_path / "20250615_041823_73MHz_averaged.ms.tar")
    with pytest.raises(InputError, match="does not hold exactly the MS directory 20250615_041823_73MHz_averaged.ms"):
        copy_ms(tar, tmp_path / "work")


@pytest.mark.parametrize("target", ["outside", "/dev/zero", "../../outside"])
def test_a_link_out_of_the_ms_is_refused_and_nothing_is_copied(source, tmp_path, capsys, target):
    lustre = tmp_path / "lustre"
    ms = shutil.copytree(source, lustre / source.name)
    (tmp_path / "outside").write_text("secret")
    (ms / "HISTORY" / "evil.f9").symlink_to(tmp_path / "outside" if target == "outside" else target)
    code = main(["copy", "--src_ms", str(ms), "--nvme_work_dir", str(tmp_path / "work")])
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert code == 2 and "HISTORY/evil.f9 is a link out of the MS" in last and str(ms) in last
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())


def test_a_link_that_stays_inside_is_copied_as_a_link(source, tmp_path):
    ms = shutil.copytree(source, tmp_path / "lustre" / source.name)
    (ms / "HISTORY" / "alias.info").symlink_to("../table.info")
    result = copy_ms(ms, tmp_path / "work")
    copied = tmp_path / "work" / source.name / "HISTORY" / "alias.info"
    assert copied.is_symlink() and copied.resolve() == (tmp_path / "work" / source.name / "table.info").resolve()
    assert not result.reused

def test_a_compressed_tar_is_a_clear_error(tmp_path):
    gz = tmp_path / "20250615_041823_73MHz_averaged.ms.tar.gz"
    gz.write_bytes(b"\x1f\x8b")
    with pytest.raises(InputError, match=r"ms\.tar\.gz: a compressed tar: inputs are x\.ms or an uncompressed x\.ms\.tar"):
        copy_ms(gz, tmp_path / "work")
    assert not (tmp_path / "work").exists() or not any((tmp_path / "work").iterdir())

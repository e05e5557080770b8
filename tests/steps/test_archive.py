"""Archive: orca's layout, atomic (a killed run leaves no partial destination), never clobbering, and a
clean-up that deletes only MS inside the work dir."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from orca_steps.archive import MANIFEST, Options, archive_products, product_files, run
from orca_steps.errors import ArchiveExistsError, InputError
from phase2_unit import DATE, LST, RUN, SUBBAND, processed_unit


def make_work_dir(root: Path, name: str = "work") -> Path:
    """A work dir with products, an MS, staged refs and hidden bookkeeping."""
    work = root / name
    for rel, text in {"I/deep/a-image.fits": "deep", "snapshots/s-I-image.fits.fs": "snap", "QA/qa.csv": "a,b",
                      "provenance.json": "{}", "timings.jsonl": "", "73MHz_concat.json": "{}",
                      "73MHz_concat.ms/table.dat": "ms", "x_averaged.ms/table.dat": "ms",
                      "refs/73MHz.bandpass.B.flagged/table.dat": "cal", ".done/concat.json": "{}",
                      ".wsclean-tmp/part.tmp": "tmp"}.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(text)
    return work


def options(work: Path, root: Path, **kw) -> Options:
    return Options(work_dir=str(work), subband=SUBBAND, lst_label=LST, obs_date=DATE, run_label=RUN,
                   archive_root=str(root / "archive"), **kw)


def test_products_leave_out_ms_refs_and_bookkeeping(tmp_path):
    files = {str(p) for p in product_files(make_work_dir(tmp_path))}
    assert files == {"I/deep/a-image.fits", "snapshots/s-I-image.fits.fs", "QA/qa.csv", "provenance.json",
                     "timings.jsonl", "73MHz_concat.json"}


def test_layout_and_manifest(tmp_path):
    work = make_work_dir(tmp_path)
    result = run(options(work, tmp_path, skip_cleanup=True))
    dest = tmp_path / "archive" / LST / DATE / RUN / SUBBAND
    assert result.archive_path == str(dest) and result.files == 6 and not result.reused
    manifest = dict(line.split("  ")[::-1] for line in (dest / MANIFEST).read_text().splitlines())
    assert set(manifest) == {str(p) for p in product_files(work)}
    for rel, digest in manifest.items():
        assert hashlib.sha256((dest / rel).read_bytes()).hexdigest() == digest
        assert (dest / rel).read_bytes() == (work / rel).read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [SUBBAND]  # no temporary sibling left


def test_a_second_run_never_clobbers(tmp_path):
    work = make_work_dir(tmp_path)
    first = run(options(work, tmp_path, skip_cleanup=True))
    again = run(options(work, tmp_path, skip_cleanup=True))  # same products: already archived
    assert again.reused and again.archive_path == first.archive_path
    (work / "QA" / "qa.csv").write_text("changed")
    with pytest.raises(ArchiveExistsError, match="already exists.*overwrite"):
        run(options(work, tmp_path, skip_cleanup=True))
    dest = Path(first.archive_path)
    assert (dest / "QA" / "qa.csv").read_text() == "a,b"  # untouched
    replaced = run(options(work, tmp_path, skip_cleanup=True, overwrite=True))
    assert not replaced.reused and (dest / "QA" / "qa.csv").read_text() == "changed"
    assert sorted(p.name for p in dest.parent.iterdir()) == [SUBBAND]


KILLED_ARCHIVE = """
import sys, time
from pathlib import Path
from orca_steps import archive
real = archive.copy_file
def slow_copy(src, dest):
    digest = real(src, dest)
    Path(sys.argv[3]).touch()  # tell the test one file is in
    time.sleep(60)
    return digest
archive.copy_file = slow_copy
archive.archive_products(sys.argv[1], sys.argv[2])
"""


def test_a_run_killed_mid_archive_leaves_no_partial_destination(tmp_path):
    work = make_work_dir(tmp_path)
    dest = tmp_path / "archive" / "unit"
    started = tmp_path / "one-file-copied"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_ARCHIVE, str(work), str(dest), str(started)])
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert started.exists(), "the archive never started"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not dest.exists()
    partials = list(dest.parent.glob(".unit.partial-*"))
    assert len(partials) == 1 and any(partials[0].rglob("*"))  # it was killed with files copied
    path, files, _, reused = archive_products(work, dest)  # the next run completes and tidies up
    assert path == dest and files == 6 and not reused
    assert sorted(p.name for p in dest.parent.iterdir()) == ["unit"]


def test_cleanup_deletes_only_ms_inside_the_work_dir(tmp_path):
    work = make_work_dir(tmp_path)
    outside = tmp_path / "lustre" / "x_averaged.ms"
    outside.mkdir(parents=True)
    (outside / "table.dat").write_text("source")
    result = run(options(work, tmp_path, ms_paths=[str(work / "x_averaged.ms"), str(outside)]))
    assert sorted(result.deleted) == sorted([str(work / "73MHz_concat.ms"), str(work / "x_averaged.ms")])
    assert outside.is_dir() and (outside / "table.dat").read_text() == "source"
    assert (work / "I" / "deep" / "a-image.fits").is_file()  # products stay on NVMe by default


def test_skip_cleanup_keeps_and_cleanup_nvme_removes_the_work_dir(tmp_path):
    work = make_work_dir(tmp_path)
    assert run(options(work, tmp_path, skip_cleanup=True)).deleted == []
    assert (work / "73MHz_concat.ms").is_dir()
    result = run(options(work, tmp_path, cleanup_nvme=True))
    assert result.deleted == [str(work)] and not work.exists()
    assert Path(result.archive_path, "I", "deep", "a-image.fits").is_file()


def test_archive_inside_the_work_dir_is_refused(tmp_path):
    work = make_work_dir(tmp_path)
    with pytest.raises(InputError, match="overlap"):
        archive_products(work, work / "archive")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no products"):
        archive_products(empty, tmp_path / "a")


def test_processed_unit_is_archived_in_orcas_layout():
    unit = processed_unit()
    root = Path(unit.options.archive_root)
    assert unit.archive == root / LST / DATE / RUN / SUBBAND
    for folder in ("I/deep", "I/10min", "V/deep", "V/10min", "snapshots", "snapshots_clean", "QA"):
        assert any((unit.archive / folder).iterdir()), folder
    assert (unit.archive / "provenance.json").is_file() and (unit.archive / MANIFEST).is_file()
    assert not list(unit.archive.rglob("*.ms")) and not (unit.archive / "refs").exists()
    assert not (unit.work_dir / f"{SUBBAND}_concat.ms").exists()  # default clean-up: the MS are gone ...
    assert not any(Path(p).exists() for p in unit.ms_paths)
    assert (unit.work_dir / "I" / "deep").is_dir()  # ... the products stay on NVMe


def test_a_copy_that_reads_back_different_is_refused(tmp_path, monkeypatch):
    """Fault injection: a write that lands corrupted on Lustre (one byte flipped after the copy). The
    read-back check refuses it and leaves no destination."""
    from orca_steps import archive
    from orca_steps.errors import OrcaError

    real_copy = archive.copy_file

    def corrupting_copy(src, dest):
        digest = real_copy(src, dest)
        if dest.name == "a-image.fits":
            data = bytearray(dest.read_bytes())
            data[0] ^= 0xFF
            dest.write_bytes(bytes(data))
        return digest

    monkeypatch.setattr(archive, "copy_file", corrupting_copy)
    work, dest = make_work_dir(tmp_path), tmp_path / "archive" / "unit"
    with pytest.raises(OrcaError, match="a-image.fits: copy does not match"):
        archive_products(work, dest)
    assert not dest.exists() and not list(dest.parent.glob(".unit.partial-*"))

"""orca's best-effort partial archive: a real failure inside Phase 2 (an unreadable beam file fails
pb-correct) leaves an archive of what existed, marked partial in its manifest, its marker and its QA page;
the complete archive of a later run replaces it; a partial archive never replaces a complete one."""
import json
import shutil
from pathlib import Path

import pytest

from orca_steps.archive import MANIFEST, archive_products, is_partial, partial_archive
from orca_steps.errors import ArchiveExistsError, InputError
from orca_steps.process_subband import Options, process_subband
from orca_steps.products import PARTIAL_MARKER
from phase2_data import phase1_outputs
from phase2_unit import KEEP_FLAGS_STRATEGY


def options(root: Path, paths, beam: Path) -> Options:
    strategy = root / "keep-flags.lua"
    strategy.write_text(KEEP_FLAGS_STRATEGY)
    return Options(ms_paths=[str(p) for p in paths], work_dir=str(root / "work"), subband="73MHz", lst_label="14h",
                   obs_date="2025-06-15", run_label="partial", archive_root=str(root / "archive"),
                   strategy=str(strategy), beam=str(beam), image_size=128, image_scale_deg=1.0, wsclean_threads=2,
                   skip_science=True)


def test_a_failed_unit_leaves_a_marked_partial_archive_that_a_complete_run_replaces(tmp_path):
    paths, _ = phase1_outputs(tmp_path, n_channels=4, n_integrations=3, n_antennas=24)
    (tmp_path / "work").mkdir()
    broken = tmp_path / "broken-beam.h5"
    broken.write_bytes(b"not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5 beam model"):
        process_subband(options(tmp_path, paths, broken))
    dest = tmp_path / "archive" / "14h" / "2025-06-15" / "partial" / "73MHz"
    assert is_partial(dest)
    marker = json.loads((dest / PARTIAL_MARKER).read_text())
    assert marker["failed_step"] == "pb-correct" and "science-images" in marker["steps_done"]
    assert (dest / MANIFEST).read_text().startswith("# PARTIAL archive: step pb-correct failed")
    assert len(list((dest / "I" / "deep").glob("*-image.fits"))) == 4  # what existed was kept
    assert list((dest / "snapshots").glob("*-image.fits"))
    page = (dest / "QA" / "index.html").read_text()
    assert "id='partial'" in page and "PARTIAL ARCHIVE" in page and "pb-correct failed" in page
    assert (tmp_path / "work" / "73MHz_concat.ms").is_dir()  # nothing deleted: a resumed run goes on

    result = process_subband(options(tmp_path, paths, tmp_path / "sim" / "refs" / "beam.h5"))
    assert Path(result.archive_path) == dest and not is_partial(dest)
    assert not (dest / MANIFEST).read_text().startswith("#")
    assert "id='partial'" not in (dest / "QA" / "index.html").read_text()
    assert list((dest / "I" / "deep").glob("*.pbcorr.fits"))


def test_a_partial_archive_never_replaces_a_complete_one(tmp_path):
    work, dest = tmp_path / "work", tmp_path / "archive" / "unit"
    (work / "QA").mkdir(parents=True)
    (work / "QA" / "a.csv").write_text("complete\n")
    archive_products(work, dest)
    before = {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    (work / "QA" / "a.csv").write_text("later, failed\n")
    (work / PARTIAL_MARKER).write_text("{}")
    with pytest.raises(ArchiveExistsError, match="complete archive"):
        archive_products(work, dest, overwrite=True, partial="step x failed")
    assert partial_archive(work, dest, "step x failed") is None
    assert {p.name: p.read_bytes() for p in dest.rglob("*") if p.is_file()} == before
    shutil.rmtree(dest)
    assert partial_archive(work, dest, "step x failed") == dest and is_partial(dest)

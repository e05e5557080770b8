"""orca's newer modes through process-subband on a small simulated hour (4 channels, 3 integrations):
snapshot_only makes the clean snapshots and no science image or cube; cube_only makes only the cube and
archives the concat MS, which still opens as a table with the concat's rows."""
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from casacore import tables

from orca_steps.pipeline import PHASE2
from orca_steps.process_subband import Options, process_subband
from orca_steps.products import CUBE_FOLDER, CUBE_PRODUCTS
from phase2_data import phase1_outputs
from phase2_unit import KEEP_FLAGS_STRATEGY

ORDER = [s.name for s in PHASE2]
SCIENCE_IMAGING = ["science-images", "pb-correct"]
SCIENCE = ["dewarp", "photometry", "transient-search", "flux-check"]


def run_mode(root: Path, **mode):
    paths, _ = phase1_outputs(root, n_channels=4, n_integrations=3, n_antennas=24)
    work = root / "work"
    work.mkdir()
    strategy = root / "keep-flags.lua"
    strategy.write_text(KEEP_FLAGS_STRATEGY)
    options = Options(ms_paths=[str(p) for p in paths], work_dir=str(work), subband="73MHz", lst_label="14h",
                      obs_date="2025-06-15", run_label="modes", archive_root=str(root / "archive"),
                      strategy=str(strategy), beam=str(root / "sim" / "refs" / "beam.h5"),
                      image_size=128, image_scale_deg=1.0, wsclean_threads=2, skip_cleanup=True, **mode)
    result = process_subband(options)
    return work, Path(result.archive_path), {r.step: r.status for r in result.steps}


@pytest.fixture(scope="module")
def snapshot_only(tmp_path_factory):
    return run_mode(tmp_path_factory.mktemp("snap"), snapshot_only=True)


@pytest.fixture(scope="module")
def cube_only(tmp_path_factory):
    return run_mode(tmp_path_factory.mktemp("cube"), cube_only=True)


def test_snapshot_only_makes_clean_snapshots_and_no_science(snapshot_only):
    work, archive, status = snapshot_only
    off = [s for s in ORDER if status[s] == "disabled"]
    assert off == ["hot-baselines", *SCIENCE_IMAGING, *SCIENCE, "cube", "compress"]
    assert status["clean-snapshots"] == "ran"
    clean = sorted((archive / "snapshots_clean").glob("*.fits*"))
    assert len(clean) == 3  # one per integration
    assert not (archive / "I").exists() and not (archive / "V").exists()
    assert not list(archive.glob("*.ms"))  # the concat MS is not archived unless asked


def test_cube_only_makes_the_cube_and_archives_the_concat_ms(cube_only):
    work, archive, status = cube_only
    off = [s for s in ORDER if status[s] == "disabled"]
    assert off == ["hot-baselines", *SCIENCE_IMAGING, *SCIENCE, "clean-snapshots", "compress"]
    assert status["cube"] == "ran"
    cubes = sorted((archive / CUBE_FOLDER).glob("*.fits"))
    assert len(cubes) == len(CUBE_PRODUCTS) + 1  # and the PB-corrected image
    assert all(fits.getdata(c).shape == (1, 4, 128, 128) for c in cubes)
    assert not (archive / "I" / "deep").exists() and not (archive / "snapshots_clean").exists()
    ms = archive / "73MHz_concat.ms"
    with tables.table(str(ms), ack=False) as archived, tables.table(str(work / "73MHz_concat.ms"), ack=False) as src:
        assert archived.nrows() == src.nrows() > 0
        np.testing.assert_array_equal(archived.getcol("TIME"), src.getcol("TIME"))
    manifest = (archive / "MANIFEST.sha256").read_text()
    assert "73MHz_concat.ms/table.dat" in manifest

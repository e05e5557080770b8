"""fpack compression: .fits.fs files that astropy opens and that match the originals within fpack's
quantisation; an original is removed only once its compressed copy has been checked."""
import os
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from orca_steps import compress
from orca_steps.compress import Options, compress_folder, run, verify_packed
from orca_steps.errors import MissingToolError, ToolFailedError
from phase2_unit import processed_unit


def noisy_images(folder: Path, n: int = 3) -> dict[Path, np.ndarray]:
    """Sky-like float images (noise, a few bright points, some NaN), as WSClean writes them (4-D)."""
    rng = np.random.default_rng(7)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for k in range(n):
        data = rng.normal(0, 2.0, (1, 1, 300, 200)).astype(np.float32)
        data[0, 0, rng.integers(0, 300, 5), rng.integers(0, 200, 5)] += 500.0
        data[0, 0, :20, :30] = np.nan  # off the sky
        path = folder / f"snap-{k}-image.fits"
        fits.PrimaryHDU(data).writeto(path)
        written[path] = data
    return written


def test_compressed_files_open_and_match_within_quantisation(tmp_path):
    originals = noisy_images(tmp_path / "snapshots")
    result = run(Options(work_dir=str(tmp_path)))
    assert len(result.packed) == 3 and result.bytes_after < result.bytes_before
    assert not list((tmp_path / "snapshots").glob("*.fits"))  # originals gone ...
    for path, data in originals.items():
        packed = Path(f"{path}.fs")  # ... replaced by .fits.fs
        with fits.open(packed) as hdul:
            got = hdul[1].data
        assert got.shape == data.shape
        assert np.array_equal(np.isnan(got), np.isnan(data))
        with fits.open(packed, disable_image_compression=True) as raw:
            step = raw[1].data["ZSCALE"].max()
        assert 0 < step < 2.0  # lossy, on the noise scale
        assert np.nanmax(np.abs(got - data)) <= 0.5 * step * 1.0001
        assert np.nanmax(np.abs(got - data)) > 0  # it did quantise: the check above is not vacuous
    assert run(Options(work_dir=str(tmp_path))).packed == []  # nothing left to do on a second run


def test_an_original_stays_when_its_compressed_copy_is_bad(tmp_path, monkeypatch):
    originals = noisy_images(tmp_path / "snapshots", n=1)
    real_run_tool = compress.run_tool

    def fpack_then_damage(args, log_file=None):
        seconds = real_run_tool(args, log_file=log_file)
        for name in args[1:]:
            fz = Path(f"{name}.fz")
            fz.write_bytes(fz.read_bytes()[: fz.stat().st_size // 2])  # a truncated write
        return seconds

    monkeypatch.setattr(compress, "run_tool", fpack_then_damage)
    with pytest.raises(ToolFailedError, match="does not open|differs"):
        compress_folder(tmp_path / "snapshots")
    for path in originals:
        assert path.is_file() and not Path(f"{path}.fs").exists()


def test_verify_rejects_a_copy_of_another_image(tmp_path):
    a, b = list(noisy_images(tmp_path, n=2))
    os.system(f"fpack {a}")
    verify_packed(a, f"{a}.fz")
    with pytest.raises(ToolFailedError, match="differs"):
        verify_packed(b, f"{a}.fz")


def test_missing_fpack_is_one_clear_error(tmp_path, monkeypatch):
    noisy_images(tmp_path / "snapshots", n=1)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    with pytest.raises(MissingToolError, match="fpack.*libcfitsio-bin"):
        run(Options(work_dir=str(tmp_path)))


def test_processed_unit_snapshots_are_all_fpacked():
    unit = processed_unit()
    snaps = unit.archive / "snapshots"
    assert not list(snaps.glob("*.fits"))
    packed = sorted(snaps.glob("*.fits.fs"))
    assert len(packed) == 2 * 6 + 1  # I and V per integration, one PSF
    for path in packed:
        with fits.open(path) as hdul:
            assert hdul[1].data.shape == (1, 1, 512, 512) and np.isfinite(hdul[1].data).any()
    deep = list((unit.archive / "I" / "deep").glob("*.fits"))
    assert deep and not list((unit.archive / "I" / "deep").glob("*.fs"))  # deep images stay uncompressed

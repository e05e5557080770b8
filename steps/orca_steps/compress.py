"""Step ``compress``: fpack the snapshot FITS of a unit (``compress_snapshots``).

Each ``x.fits`` becomes ``x.fits.fs`` (orca's name for fpack's ``.fz``). fpack's default float
compression is lossy by design (values quantised to a quarter of the tile's noise, per tile), so an
original is removed only after its compressed copy opens with astropy and matches it to within half a
quantisation step in every pixel, with NaNs in the same places. Deep images are never compressed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .errors import ToolFailedError
from .logs import step_timer
from .products import LOGS_FOLDER
from .tools import require_tool, run_tool

PACKED_SUFFIX = ".fs"
FILES_PER_CALL = 200  # fpack takes many files per call; keep the command line modest
OVERLAP_BATCHES = 4  # at least this many fpack calls, so that verifying one overlaps packing the next


class Options(BaseModel):
    work_dir: str = Field(description="NVMe work dir of the unit")
    folder: str = Field("snapshots", description="folder of <work_dir> whose *.fits are compressed")


class Result(BaseModel):
    packed: list[str]
    bytes_before: int
    bytes_after: int
    tool_seconds: dict[str, float] = Field(description="seconds inside each external tool")


def _quantisation_step(packed: Path, shape: tuple[int, ...]) -> np.ndarray | None:
    """Per-pixel quantisation step (ZSCALE of each pixel's tile), or None if stored losslessly."""
    from astropy.io import fits

    with fits.open(packed, disable_image_compression=True) as raw:
        table = raw[1]
        if "ZSCALE" not in table.columns.names:
            return None
        zscale = np.asarray(table.data["ZSCALE"], dtype=float)
        naxis = table.header["ZNAXIS"]
        lengths = [table.header[f"ZNAXIS{i}"] for i in range(1, naxis + 1)]
        tiles = [table.header.get(f"ZTILE{i}", lengths[0] if i == 1 else 1) for i in range(1, naxis + 1)]
    counts = [-(-n // t) for n, t in zip(lengths, tiles)]
    # the tiles' steps in numpy's axis order (FITS axis 1 varies fastest: numpy's last), each repeated over its
    # tile's pixels: one full-size array, not a full-size tile index per axis
    step = zscale.reshape(counts[::-1])
    for axis, tile in enumerate(tiles[::-1]):
        step = np.repeat(step, tile, axis=axis)
    return step[tuple(slice(0, n) for n in lengths[::-1])].reshape(shape)


def verify_packed(original: str | Path, packed: str | Path) -> None:
    """Raise ToolFailedError unless ``packed`` decompresses to ``original`` within quantisation."""
    from astropy.io import fits

    ref = np.asarray(fits.getdata(original), dtype=float)
    try:
        with fits.open(packed) as hdul:
            got = np.asarray(hdul[1].data, dtype=float)
    except Exception as exc:  # noqa: BLE001 - whatever fails to decode, the copy is bad
        raise ToolFailedError(f"{packed}: compressed file does not open: {exc}") from exc
    if got.shape != ref.shape:
        raise ToolFailedError(f"{packed}: shape {got.shape} differs from {original} {ref.shape}")
    nan_ref, nan_got = np.isnan(ref), np.isnan(got)
    if not np.array_equal(nan_ref, nan_got):
        raise ToolFailedError(f"{packed}: NaN pixels differ from {original}")
    step = _quantisation_step(Path(packed), ref.shape)
    tolerance = 0.0 if step is None else 0.5 * step * (1 + 1e-6) + 1e-6 * np.abs(ref)
    got -= ref  # in place; NaN where both are blank, and NaN > tolerance is False
    if np.any(np.abs(got, out=got) > tolerance):
        raise ToolFailedError(f"{packed}: differs from {original} by more than the quantisation step")


def _replace_verified(batch: list[Path]) -> list[Path]:
    """Verify each packed copy of ``batch``, give it its ``.fs`` name and remove the original."""
    packed = []
    for path in batch:
        fz = Path(f"{path}.fz")
        if not fz.is_file():
            raise ToolFailedError(f"fpack did not write {fz}")
        verify_packed(path, fz)
        target = Path(f"{path}{PACKED_SUFFIX}")
        fz.replace(target)
        path.unlink()
        packed.append(target)
    return packed


def fpack_files(paths: list[Path], log_file: str | Path | None = None) -> tuple[list[Path], float]:
    """Compress ``paths`` to ``<path>.fs``, verify each, then remove the originals. Returns (packed, seconds).

    fpack runs in a few batches; each batch is verified in a thread while fpack packs the next (astropy's
    decompression is as slow as fpack: one after the other took twice as long)."""
    from concurrent.futures import ThreadPoolExecutor

    require_tool("fpack")
    seconds, size = 0.0, max(1, min(FILES_PER_CALL, -(-len(paths) // OVERLAP_BATCHES)))
    with ThreadPoolExecutor(1) as verifier:
        batches = []
        for start in range(0, len(paths), size):
            batch = paths[start:start + size]
            for path in batch:
                Path(f"{path}.fz").unlink(missing_ok=True)  # left by an interrupted run
            seconds += run_tool(["fpack", *map(str, batch)], log_file=log_file)
            batches.append(verifier.submit(_replace_verified, batch))
        packed = [p for done in batches for p in done.result()]
    return packed, seconds


def compress_folder(folder: str | Path, log_file: str | Path | None = None) -> Result:
    """fpack every ``*.fits`` in ``folder`` (already packed files are left alone)."""
    folder = Path(folder)
    paths = sorted(folder.glob("*.fits")) if folder.is_dir() else []
    before = sum(p.stat().st_size for p in paths)
    packed, seconds = fpack_files(paths, log_file)
    after = sum(p.stat().st_size for p in packed)
    return Result(packed=[str(p) for p in packed], bytes_before=before, bytes_after=after,
                  tool_seconds={"fpack": round(seconds, 3)})


def run(options: Options) -> Result:
    with step_timer("compress", options.work_dir, folder=options.folder) as timing:
        result = compress_folder(Path(options.work_dir) / options.folder,
                                 Path(options.work_dir) / LOGS_FOLDER / "fpack.log")
        timing.update({f"{tool}_seconds": s for tool, s in result.tool_seconds.items()})
    return result

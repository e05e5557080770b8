"""Step ``movies``: orca's snapshot movies, grayscale MP4 made by ffmpeg from frames rendered here.

``Movies/<sb>_I_Raw.mp4`` (clean snapshots, limits the 1 and 99.5 percentiles of the median frame),
``Movies/<sb>_I_Filtered.mp4`` (the median over time subtracted, -3 sigma .. +5 sigma) and
``Movies/<sb>_V_Raw.mp4`` (pilot snapshots' Stokes V, +-5 sigma). At most ``MAX_FRAMES`` frames, evenly
spread over the hour; no movie from fewer than ``MIN_FRAMES`` snapshots. Zero pixels (WSClean's blank
horizon) count as blank: left out of the statistics and drawn white. Frames are block-averaged to at most
``MAX_SIDE`` pixels so that the median over 150 full-size snapshots fits in memory; a movie shows no finer
detail anyway. Frames go to ffmpeg as raw gray bytes through a pipe, one at a time.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .errors import ToolFailedError
from .fileio import atomic_path
from .logs import get_logger, log, step_timer
from .products import MOVIE_FOLDER, movie_name
from .skyimage import block_mean
from .tools import require_tool, tool_env
from .wsclean import site_recipes

_logger = get_logger("movies")
MAX_FRAMES, MIN_FRAMES = 150, 10
MAX_SIDE = 1024
FPS = 10
BLANK = 255  # white


class Options(BaseModel):
    work_dir: str = Field(description="unit work dir: snapshots_clean/ (I) and snapshots/ (V) are read")
    subband: str = Field(description="subband label, names the movies")


class Result(BaseModel):
    movies: dict[str, str] = Field(description="kind (I_Raw, I_Filtered, V_Raw) -> MP4")
    frames: dict[str, int]
    notes: list[str] = []


def pick_frames(paths: list[Path], max_frames: int = MAX_FRAMES) -> list[Path]:
    """At most ``max_frames`` snapshots, evenly spread in time (the paths are time-ordered)."""
    if len(paths) <= max_frames:
        return list(paths)
    return [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, max_frames).round().astype(int))]


def load_frame(path: Path) -> np.ndarray:
    """First image plane (fpacked or not), zeros as NaN, block-averaged to at most MAX_SIDE pixels."""
    from astropy.io import fits

    with fits.open(path) as hdul:
        hdu = next(h for h in hdul if h.data is not None and getattr(h.data, "ndim", 0) >= 2)
        data = np.asarray(hdu.data, dtype=np.float32)
    data = data.reshape(data.shape[-2:]) if data.size == np.prod(data.shape[-2:]) else data[(0,) * (data.ndim - 2)]
    data, _ = block_mean(np.where(data == 0, np.nan, data), MAX_SIDE)
    return data[::-1]  # FITS rows go up, video rows go down


def to_gray(frame: np.ndarray, vmin: float, vmax: float) -> bytes:
    """8-bit grayscale between the limits, blanks white, padded to even sides (H.264 4:2:0)."""
    scaled = np.clip((frame - vmin) / (vmax - vmin) * 254.0, 0, 254).round()
    gray = np.where(np.isfinite(frame), scaled, BLANK).astype(np.uint8)
    ny, nx = gray.shape
    return np.pad(gray, ((0, ny % 2), (0, nx % 2)), constant_values=BLANK).tobytes()


def write_movie(frames, shape: tuple[int, int], out: Path) -> int:
    """Pipe 8-bit frames (an iterable of bytes) into ffmpeg (H.264, yuv420p); returns the frame count."""
    ffmpeg = require_tool("ffmpeg")
    ny, nx = shape[0] + shape[0] % 2, shape[1] + shape[1] % 2
    with atomic_path(out) as tmp:  # -f mp4: the temporary's name does not end in .mp4
        proc = subprocess.Popen([ffmpeg, "-loglevel", "error", "-y", "-f", "rawvideo", "-pix_fmt", "gray",
                                 "-s", f"{nx}x{ny}", "-r", str(FPS), "-i", "-", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                                 "-crf", "12", "-f", "mp4", str(tmp)], stdin=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=tool_env())
        count = 0
        try:
            for frame in frames:
                proc.stdin.write(frame)
                count += 1
        finally:
            proc.stdin.close()
            err = proc.stderr.read().decode(errors="replace")
            proc.wait()
        if proc.returncode != 0:
            raise ToolFailedError(f"ffmpeg failed writing {out.name}: {err.strip()[-800:]}")
    return count


def snapshot_movies(kind_paths: dict[str, list[Path]], subband: str, out_dir: Path) -> Result:
    """The three movies from time-ordered I (clean) and V (pilot) snapshots; too few: a note instead."""
    movies, frames, notes = {}, {}, []
    for stokes, paths in kind_paths.items():
        if len(paths) < MIN_FRAMES:
            notes.append(f"no {stokes} movies: {len(paths)} snapshots (< {MIN_FRAMES})")
            continue
        stack = np.stack([load_frame(p) for p in pick_frames(paths)])
        if stokes == "I":  # the median is for I alone: V's movie does not need it
            median = np.nanmedian(stack, axis=0)
            vmin, vmax = np.nanpercentile(median, [1.0, 99.5])
            kinds = {"I_Raw": (stack, vmin, vmax)}
            filtered = stack - median
            sigma = float(np.nanstd(filtered))
            kinds["I_Filtered"] = (filtered, -3 * sigma, 5 * sigma)
        else:
            sigma = float(np.nanstd(stack))
            kinds = {"V_Raw": (stack, -5 * sigma, 5 * sigma)}
        for kind, (cube, lo, hi) in kinds.items():
            out = out_dir / movie_name(subband, kind)
            frames[kind] = write_movie((to_gray(f, lo, hi) for f in cube), cube.shape[1:], out)
            movies[kind] = str(out)
    return Result(movies=movies, frames=frames, notes=notes)


def snapshots_of(work_dir: Path, subband: str) -> dict[str, list[Path]]:
    """Time-ordered Stokes I clean snapshots and Stokes V pilot snapshots (names carry the UTC time)."""
    recipes = site_recipes()
    clean, pilot = recipes.clean_snapshot, recipes.pilot_snapshot
    return {"I": sorted((work_dir / clean.folder).glob(f"{subband}-{clean.suffix}-*-image.fits*")),
            "V": sorted((work_dir / pilot.folder).glob(f"{subband}-{pilot.suffix}-*-V-image.fits*"))}


def run(options: Options) -> Result:
    work = Path(options.work_dir)
    with step_timer("movies", options.work_dir, subband=options.subband):
        result = snapshot_movies(snapshots_of(work, options.subband), options.subband, work / MOVIE_FOLDER)
    log(_logger, "movies", movies=list(result.movies), notes=result.notes)
    return result

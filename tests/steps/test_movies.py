"""Snapshot movies: real ffmpeg, checked with ffprobe (frame count, size) and by decoding frames back to
gray levels (the limits orca uses: percentiles of the median frame, sigmas of the filtered and V frames)."""
import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from orca_steps.movies import MAX_FRAMES, run, Options
from orca_steps.products import MOVIE_FOLDER, movie_name

NY, NX = 48, 64  # even sides; an odd one is padded


def write_snapshots(work: Path, n: int, shape=(NY, NX), seed=0) -> None:
    """n clean I snapshots (fpacked, as clean-snapshots leaves them) and n pilot V snapshots."""
    rng = np.random.default_rng(seed)
    (work / "snapshots_clean").mkdir(parents=True, exist_ok=True)
    (work / "snapshots").mkdir(parents=True, exist_ok=True)
    ramp = np.linspace(0, 100, shape[1])[None, :] * np.ones(shape)
    for k in range(n):
        stamp = f"20250615_{10 + k // 60:02d}{k % 60:02d}00"
        sky = (ramp * (1 + 0.2 * k) + rng.normal(0, 1, shape)).astype(np.float32)  # brightening: median != any frame
        sky[:4] = 0.0  # blank horizon rows
        hdu = fits.CompImageHDU(sky[None, None], compression_type="RICE_1", quantize_level=64)
        fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(
            work / "snapshots_clean" / f"73MHz-Clean-Snapshot-{stamp}-image.fits.fs")
        fits.writeto(work / "snapshots" / f"73MHz-Pilot-Snapshot-{stamp}-V-image.fits",
                     rng.normal(0, 2, (1, 1) + shape).astype(np.float32))


def probe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=width,height,nb_read_frames,codec_name", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)["streams"][0]


def first_frame_gray(path: Path, shape) -> np.ndarray:
    raw = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(shape).astype(float)


def test_three_movies_with_one_frame_per_snapshot(tmp_path):
    write_snapshots(tmp_path, 12)
    result = run(Options(work_dir=str(tmp_path), subband="73MHz"))
    assert set(result.movies) == {"I_Raw", "I_Filtered", "V_Raw"}
    for kind in result.movies:
        path = tmp_path / MOVIE_FOLDER / movie_name("73MHz", kind)
        info = probe(path)
        assert (info["codec_name"], int(info["nb_read_frames"]), info["width"], info["height"]) == ("h264", 12, NX, NY)


def test_raw_limits_are_the_median_frames_percentiles_and_blanks_are_white(tmp_path):
    write_snapshots(tmp_path, 10)
    run(Options(work_dir=str(tmp_path), subband="73MHz"))
    gray = first_frame_gray(tmp_path / MOVIE_FOLDER / movie_name("73MHz", "I_Raw"), (NY, NX))
    frames = [np.where(d == 0, np.nan, d) for d in
              (fits.getdata(p, ext=1)[0, 0] for p in sorted((tmp_path / "snapshots_clean").iterdir()))]
    lo, hi = np.nanpercentile(np.nanmedian(frames, axis=0), [1, 99.5])
    expected = np.clip((frames[0] - lo) / (hi - lo) * 254, 0, 254)[::-1]
    sky = np.isfinite(expected)
    assert np.all(gray[~sky] >= 250)  # the zeroed rows (at the bottom of the video) are white
    assert np.percentile(np.abs(gray[sky] - expected[sky]), 90) < 4  # H.264 at crf 12


def test_at_most_150_frames_and_none_from_fewer_than_10(tmp_path):
    many, few = tmp_path / "many", tmp_path / "few"
    write_snapshots(many, MAX_FRAMES + 31, shape=(16, 17))
    write_snapshots(few, 9)
    result = run(Options(work_dir=str(many), subband="73MHz"))
    info = probe(Path(result.movies["V_Raw"]))
    assert int(info["nb_read_frames"]) == MAX_FRAMES and (info["width"], info["height"]) == (18, 16)
    result = run(Options(work_dir=str(few), subband="73MHz"))
    assert result.movies == {} and not (few / MOVIE_FOLDER).exists()
    assert result.notes == ["no I movies: 9 snapshots (< 10)", "no V movies: 9 snapshots (< 10)"]


def test_missing_ffmpeg_is_named(tmp_path, monkeypatch):
    write_snapshots(tmp_path, 10)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(Exception, match="ffmpeg"):
        run(Options(work_dir=str(tmp_path), subband="73MHz"))


def test_large_frames_are_block_averaged_to_at_most_the_movie_side():
    from orca_steps.skyimage import block_mean

    data = np.arange(2050 * 2050, dtype=float).reshape(2050, 2050)
    data[:3, :3] = np.nan  # an all-blank block stays blank
    data[3, 3] = np.nan  # a partly blank block: the mean of the rest
    small, factor = block_mean(data, 1024)
    assert factor == 3 and small.shape == (683, 683)
    assert np.isnan(small[0, 0]) and small[1, 1] == np.nanmean(data[3:6, 3:6]) and small[2, 2] == data[6:9, 6:9].mean()

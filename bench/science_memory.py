"""Benchmark of the science steps' peak memory on full-size images (not a test).

Writes 17 PB-corrected-like images of ``--size`` pixels (default 4096 x 0.03125 deg, the 64-82 MHz tier)
into ``--out`` (generated here, never committed): 4 deep I recipes, deep V, and six 10-min I and V
images, float32 4-D WSClean headers, NaN below 10 deg elevation, beam-correlated-looking noise, a few
sources and targets. Then runs ``photometry`` and ``transient-search`` on all 17, each in a fresh child
process (bench/measure.py), and prints each step's seconds and peak resident memory (VmHWM) against the
target (<= 1024 MB), with the peak of a child that only imports the step, for scale.

    .venv/bin/python bench/science_memory.py [--out out/bench-science] [--size 4096] [--scale-deg 0.03125]
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from measure import in_child, peak_rss_mb

TARGET_PEAK_MB = 1024.0
FREQ_HZ = 75.4e6
T0 = 60841.6 * 86400.0  # MJD seconds of the deep images' mid-time
INTERVAL_S = 600.0
DEEP_RECIPES = ["I-Deep-Taper-Robust-0", "I-Deep-Taper-Robust-0.75", "I-Deep-NoTaper-Robust-0",
                "I-Deep-NoTaper-Robust-0.75"]


def zenith(time_s: float) -> tuple[float, float]:
    from orca_steps.config import OVRO_LAT_DEG
    from orca_steps.skyimage import lst_deg

    return lst_deg(time_s), OVRO_LAT_DEG


def write_image(path: Path, size: int, scale_deg: float, time_s: float, stokes: str, beam_deg: float,
                noise_jy: float, sources: list[tuple[float, float, float]], seed: int) -> None:
    """One image: noise, Gaussian sources (x, y, peak) drawn only near each, NaN below 10 deg elevation."""
    import numpy as np
    from astropy.io import fits

    from orca_steps.sim.images import make_header

    header = make_header(zenith(T0), size, scale_deg, FREQ_HZ, time_s, beam_deg, stokes)
    rng = np.random.default_rng(seed)
    data = rng.normal(scale=noise_jy, size=(size, size)).astype(np.float32)
    sigma = beam_deg / scale_deg / 2.3548
    r = int(5 * sigma) + 1
    for x, y, peak in sources:
        yy, xx = np.mgrid[int(y) - r:int(y) + r + 1, int(x) - r:int(x) + r + 1]
        data[yy, xx] += (peak * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * sigma**2))).astype(np.float32)
    yy, xx = np.ogrid[0:size, 0:size]
    sin_za = np.hypot(xx - size // 2, yy - size // 2) * np.deg2rad(scale_deg)
    data[sin_za > np.cos(np.deg2rad(10.0))] = np.nan  # below 10 deg elevation, as pb-correct blanks
    fits.PrimaryHDU(data.reshape(1, 1, size, size), header=header).writeto(path, overwrite=True)


def make_inputs(out: Path, size: int, scale_deg: float) -> dict:
    """The 17 images and a target list; reused when the same size was written before."""
    marker = out / "inputs.json"
    if marker.is_file():
        info = json.loads(marker.read_text())
        if info["size"] == size and info["scale_deg"] == scale_deg:
            return info
    out.mkdir(parents=True, exist_ok=True)
    print(f"writing 17 images of {size}^2 into {out} ...", flush=True)
    from datetime import datetime, timezone

    stamp = datetime.fromtimestamp(T0 - 3506716800.0, timezone.utc).strftime("%Y%m%d_%H%M%S")
    c = size // 2
    step = max(8, size // 16)
    sources = [(c + i * step + 0.3, c + j * step - 0.2, 10.0 + 7 * abs(i * j)) for i in (-3, 0, 2) for j in (-2, 1, 3)]
    beam_deg = 8 * scale_deg
    deep = []
    for k, recipe in enumerate(DEEP_RECIPES):
        deep.append(out / f"73MHz-{recipe}-{stamp}-image.pbcorr.fits")
        write_image(deep[-1], size, scale_deg, T0, "I", beam_deg * (1.0 + 0.1 * k), 0.05, sources, seed=k)
    deep.append(out / f"73MHz-V-Deep-{stamp}-image.pbcorr.fits")
    write_image(deep[-1], size, scale_deg, T0, "V", beam_deg, 0.02, [], seed=9)
    intervals = []
    for k in range(6):
        t = T0 + (k - 2.5) * INTERVAL_S
        for stokes, noise, srcs in (("I", 0.12, sources + ([(c - 2 * step + 0.1, c + 2 * step, 3.0)] if k == 3 else [])),
                                    ("V", 0.05, [])):
            intervals.append(out / f"73MHz-{stokes}-10min-t{k:04d}-image.pbcorr.fits")
            write_image(intervals[-1], size, scale_deg, t, stokes, beam_deg, noise, srcs, seed=20 + k)
    from orca_steps.sim.images import make_header
    from astropy.wcs import WCS

    wcs = WCS(make_header(zenith(T0), size, scale_deg, FREQ_HZ, T0, beam_deg)).celestial
    ra, dec = wcs.all_pix2world([x for x, _, _ in sources[:5]], [y for _, y, _ in sources[:5]], 0)
    targets = out / "targets.csv"
    targets.write_text("name,ra,dec,stokes,confusers\n" + "".join(
        f"T{k},{a:.6f},{d:.6f},IV,\n" for k, (a, d) in enumerate(zip(ra, dec))))
    info = {"size": size, "scale_deg": scale_deg, "deep": [str(p) for p in deep],
            "intervals": [str(p) for p in intervals], "targets": str(targets)}
    marker.write_text(json.dumps(info, indent=1))
    return info


def _measure(step: str, args: dict, queue) -> None:
    from orca_steps import photometry, transient_search

    work = Path(args["work"]) / step
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    if step == "photometry":
        photometry.run(photometry.Options(work_dir=str(work), target_lists=[args["targets"]],
                                          deep_images=args["deep"], interval_images=args["intervals"]))
    elif step == "transient-search":
        transient_search.run(transient_search.Options(work_dir=str(work), deep_images=args["deep"],
                                                      interval_images=args["intervals"]))
    queue.put({"seconds": time.perf_counter() - start, "rss_mb": peak_rss_mb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="out/bench-science")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--scale-deg", type=float, default=0.03125)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    info = make_inputs(out / "images", args.size, args.scale_deg)
    n = len(info["deep"]) + len(info["intervals"])
    common = {"work": str(out / "work"), "deep": info["deep"], "intervals": info["intervals"],
              "targets": info["targets"]}
    print(f"science memory benchmark: {n} images of {args.size}^2; load average {os.getloadavg()[0]:.1f} on "
          f"{os.cpu_count()} CPUs")
    print(f"{'step':<20}{'seconds':>9}{'peak RSS MB':>13}{'target MB':>11}")
    for step in ("imports only", "photometry", "transient-search"):
        r = in_child(_measure, step, common)
        verdict = "" if step == "imports only" else ("met" if r["rss_mb"] <= TARGET_PEAK_MB else "NOT met")
        print(f"{step:<20}{r['seconds']:>9.1f}{r['rss_mb']:>13.0f}{TARGET_PEAK_MB:>11.0f}  {verdict}", flush=True)


if __name__ == "__main__":
    main()

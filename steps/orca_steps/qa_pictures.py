"""Sky pictures for the QA page: the deep I and V images, one 10-minute image and one snapshot as PNG,
with the calibrators the flux check measured marked; links to the movies and cubes.

A person judges an image in a second that no table shows (sidelobes, a missing source, a striped
horizon). Large images are block-averaged to at most ``MAX_SIDE`` pixels before plotting; one image is
in memory at a time.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .products import FLUX_CHECK_CSV, QA_FOLDER, cube_files, movie_files
from .skyimage import block_mean, load_image
from .wsclean import site_recipes

MAX_SIDE = 800


def _first(folder: Path, patterns: list[str]) -> Path | None:
    """The first file matching the first pattern that matches anything (preference order)."""
    for pattern in patterns:
        found = sorted(folder.glob(pattern))
        if found:
            return found[0]
    return None


def picture_sources(work: Path) -> dict[str, Path | None]:
    """Title -> image to show: dewarped, else PB-corrected, else raw (the reference deep I recipe)."""
    corrected = ["-image.pbcorr_dewarped.fits", "-image.pbcorr.fits", "-image.fits"]
    pick = lambda folder, tag: _first(work / folder, [f"*{tag}*{p}" if tag else f"*{p}" for p in corrected])  # noqa: E731
    return {"Deep Stokes I (I-Deep-Taper-Robust-0.75)": pick("I/deep", "I-Deep-Taper-Robust-0.75-"),
            "Deep Stokes V": pick("V/deep", ""),
            "10-minute Stokes I (first interval)": pick("I/10min", ""),
            "Snapshot Stokes I (first pilot snapshot)": _first(work / site_recipes().pilot_snapshot.folder,
                                                                         ["*-I-image.fits*"])}


def measured_sources(work: Path) -> list[tuple[str, float, float]]:
    """(name, ra, dec) of the calibrators the flux check measured (status ok)."""
    path = work / QA_FOLDER / FLUX_CHECK_CSV
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [(r["name"], float(r["ra_deg"]), float(r["dec_deg"])) for r in csv.DictReader(fh) if r["status"] == "ok"]


def render_picture(image: Path, out: Path, title: str, sources: list[tuple[str, float, float]]) -> tuple[Path, int]:
    """PNG of one image (zeros blank, 1-99.5 percentile stretch), measured sources circled and named."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = load_image(image, "QA picture")
    data, factor = block_mean(np.where(img.data == 0, np.nan, img.data), MAX_SIDE)
    finite = data[np.isfinite(data)]
    lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0, 1)
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(data, origin="lower", cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    shown = 0
    for name, ra, dec in sources:
        x, y = img.world_to_pixel(ra, dec)
        if img.inside(x, y):
            ax.plot(x[0] / factor, y[0] / factor, "o", mfc="none", mec="red", ms=14, mew=1.5)
            ax.annotate(name, (x[0] / factor, y[0] / factor), xytext=(8, 8), textcoords="offset points", color="red")
            shown += 1
    ax.set(title=f"{title}\n{image.name}", xticks=[], yticks=[])
    ax.set_xlabel(f"{shown} measured sources marked")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=80)
    plt.close(fig)
    return out, shown


def pictures(work: Path) -> list[tuple[str, Path | None, Path | None, int]]:
    """(title, image shown, PNG written, sources marked) per picture; a missing image: (title, None, None, 0)."""
    sources = measured_sources(work)
    out = []
    for k, (title, image) in enumerate(picture_sources(work).items()):
        png, shown = render_picture(image, work / QA_FOLDER / "pictures" / f"sky_{k}.png", title, sources) if image \
            else (None, 0)
        out.append((title, image, png, shown))
    return out


def product_links(work: Path) -> list[Path]:
    """Movies and cubes, relative to the work dir (the same layout as the archive)."""
    return [p.relative_to(work) for p in movie_files(work) + cube_files(work)]

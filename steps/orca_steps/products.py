"""Names of the newer orca products (cube, movies, partial archive), written once: the steps that write
them and the QA page that shows them both import these names.
"""
from __future__ import annotations

from pathlib import Path

CUBE_RECIPE = "I-Deep-Taper-Robust-0"  # orca's cube recipe (a science recipe's suffix)
CUBE_FOLDER = "I/cube"
CUBE_PRODUCTS = ("image", "residual", "psf", "model", "dirty")
MOVIE_FOLDER = "Movies"
MOVIE_KINDS = ("I_Raw", "I_Filtered", "V_Raw")
QA_STATUS = "qa_status.json"  # QA/<this>: the page's verdict per step, read by the night dashboard
QA_PAGE = "QA/index.html"
PARTIAL_MARKER = "PARTIAL.json"  # in a partial archive: why it is partial, which step failed


def cube_name(subband: str, product: str, stamp: str, pbcorr: bool = False, dewarped: bool = False) -> str:
    """``<sb>-I-Deep-Taper-Robust-0-cube-<product>-<UTC>[.pbcorr][_dewarped].fits``."""
    if product not in CUBE_PRODUCTS:
        raise ValueError(f"unknown cube product {product!r}; known: {CUBE_PRODUCTS}")
    return (f"{subband}-{CUBE_RECIPE}-cube-{product}-{stamp}" + (".pbcorr" if pbcorr else "")
            + ("_dewarped" if dewarped else "") + ".fits")


def cube_files(work_dir: str | Path) -> list[Path]:
    """Every cube under a work dir or an archive."""
    return sorted((Path(work_dir) / CUBE_FOLDER).glob(f"*-{CUBE_RECIPE}-cube-*.fits"))


def movie_name(freq_label: str, kind: str) -> str:
    """``<freq>_I_Raw.mp4`` etc. (``freq_label`` is the subband label, e.g. 73MHz)."""
    if kind not in MOVIE_KINDS:
        raise ValueError(f"unknown movie kind {kind!r}; known: {MOVIE_KINDS}")
    return f"{freq_label}_{kind}.mp4"


def movie_files(work_dir: str | Path) -> list[Path]:
    return sorted((Path(work_dir) / MOVIE_FOLDER).glob("*.mp4"))

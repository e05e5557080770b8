"""Names of a unit's products, written once: the step that writes a product and the QA page, archive,
provenance or night dashboard that reads it both import the name from here (a test refuses a product
name typed anywhere else).
"""
from __future__ import annotations

from pathlib import Path

CUBE_RECIPE = "I-Deep-Taper-Robust-0"  # orca's cube recipe (a science recipe's suffix)
CUBE_FOLDER = "I/cube"
CUBE_PRODUCTS = ("image", "residual", "psf", "model", "dirty")
MOVIE_FOLDER = "Movies"
MOVIE_KINDS = ("I_Raw", "I_Filtered", "V_Raw")
QA_FOLDER = "QA"  # QA tables, plots and the page
LOGS_FOLDER = "logs"  # tools' log files
PHOTOMETRY_FOLDER = "photometry"  # per-target tables and plots
DETECTIONS_FOLDER = "detections"  # cutouts of photometry detections
TRANSIENTS_FOLDER = "transients"
QA_STATUS = "qa_status.json"  # QA/<this>: the page's verdict per step, read by the night dashboard
QA_PAGE = f"{QA_FOLDER}/index.html"
PARTIAL_MARKER = "PARTIAL.json"  # in a partial archive: why it is partial, which step failed
TIMINGS = "timings.jsonl"  # every step timer appends a line (logs.step_timer)
PROVENANCE = "provenance.json"
CALIBRATION_SOLUTIONS_FOLDER = ".calibration-solutions"  # beside the MS: apply-calibration's saved solutions
# in QA/
FLUX_CHECK_CSV = "flux_check.csv"
FLUX_CHECK_PLOT = "flux_check.png"
IMAGE_NOISE_CSV = "image_noise.csv"
DEWARP_RECORD = "dewarp.json"
DEWARP_PLOT = "dewarp_offsets.png"
HOT_BASELINES_REPORT = "hot_baselines_report.txt"
HOT_BASELINES_UV_PLOT = "hot_baselines_amp_vs_uv.png"
HOT_BASELINES_HEATMAP = "hot_baselines_heatmap.png"
# in photometry/ and transients/
PHOTOMETRY_SUMMARY = "summary.csv"
TRANSIENT_CANDIDATES = "candidates.csv"
TRANSIENT_SUMMARY = "summary.json"
_SNAPSHOT_QA, _SNAPSHOT_RMS = "snapshot_qa_", "snapshot_rms_"


def snapshot_qa_csv(subband: str) -> str:
    """QA/<this>: one row per snapshot ("*" as the subband makes a glob pattern)."""
    return f"{_SNAPSHOT_QA}{subband}.csv"


def snapshot_rms_plot(subband: str) -> str:
    return f"{_SNAPSHOT_RMS}{subband}.png"


def snapshot_qa_subband(csv_name: str) -> str:
    """The subband of a ``snapshot_qa_csv`` name."""
    return csv_name[len(_SNAPSHOT_QA):-len(".csv")]


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

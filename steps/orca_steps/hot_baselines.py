"""Step ``hot-baselines``: find baselines (and antennas) with excess amplitude and flag them.

orca's two analyses of the per-baseline, per-correlation mean |V| over time and channel (from
CORRECTED_DATA, unflagged samples only, read in row chunks):
1. amplitude vs baseline length: per correlation, sort the baselines by length and flag those above
   a rolling median + ``uv_sigma`` (7) x 1.4826 x rolling MAD envelope. Baselines shorter than
   ``uv_cut_lambda`` (4) wavelengths, and those of dead antennas (median below 0.2 x the array's), are
   left out of the fit;
2. cross-hand heatmap: (|XY| + |YX|) / 2 per baseline, without the short and the pass-1 baselines;
   flag those above median + ``sigma`` (5) x 1.4826 x MAD.
An antenna with more than ``antenna_fraction`` (25 %) of its baselines flagged is bad as a whole.
Writes ``QA/hot_baselines_report.txt``, ``QA/hot_baselines_amp_vs_uv.png`` and
``QA/hot_baselines_heatmap.png``, then flags the MS (bad antennas, then the remaining bad baselines).
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from . import msstate
from .constants import C_M_S, CORR_NAMES, LINEAR_CORR_TYPES
from .errors import InputError
from .logs import get_logger, log, step_timer
from .products import HOT_BASELINES_HEATMAP, HOT_BASELINES_REPORT, HOT_BASELINES_UV_PLOT, QA_FOLDER
from .msio import antenna_positions, linear_correlation_index, open_ms, spectral_windows
from .msread import flag_rows_where, read_chunks

_logger = get_logger("hot-baselines")
MAD_TO_SIGMA = 1.4826
WARNING_PREFIX = "WARNING: "  # report lines the QA page shows as needing attention
DEAD_FRACTION = 0.2  # orca: an antenna whose median |V| is below this fraction of the array's is dead


class Options(BaseModel):
    ms: str = Field(description="MS to analyse and flag in place (the concat)")
    work_dir: str | None = Field(None, description="QA/ goes here (default: the MS's folder)")
    column: str = Field("CORRECTED_DATA", description="data column analysed")
    uv_sigma: float = Field(7.0, description="amplitude-vs-length envelope: rolling median + uv_sigma x MAD_std")
    sigma: float = Field(5.0, description="cross-hand heatmap threshold: median + sigma x MAD_std")
    uv_cut_lambda: float = Field(4.0, description="baselines shorter than this many wavelengths are ignored")
    antenna_fraction: float = Field(0.25, description="an antenna is bad if more than this fraction of its baselines are")
    uv_window: int = Field(400, description="baselines in the rolling window of the amplitude-vs-length fit")
    apply_flags: bool = Field(True, description="flag the bad antennas and baselines in the MS")


class Result(BaseModel):
    ms_path: str
    report: str
    plots: list[str]
    uv_outliers: list[tuple[int, int]] = Field(description="baselines (correlator indices) found by analysis 1")
    heatmap_outliers: list[tuple[int, int]] = Field(description="baselines found by analysis 2")
    bad_antennas: list[int]
    flagged_baselines: list[tuple[int, int]] = Field(description="baselines flagged besides the bad antennas'")
    rows_flagged: int
    warnings: list[str] = Field(default_factory=list, description="why the analysis could not judge (also in the report)")
    reused: bool = Field(False, description="the MS had been analysed and flagged already")


# --- statistics ------------------------------------------------------------------------------------
def mean_amplitudes(ms: str | Path, column: str = "CORRECTED_DATA") -> np.ndarray:
    """Mean |V| over time and channel of unflagged samples, (n_ant, n_ant, 4) as XX, XY, YX, YY whatever the
    MS's order, upper triangle; NaN if none."""
    names, _ = antenna_positions(ms)
    corr_index = linear_correlation_index(ms)
    n_ant = len(names)
    sums = np.zeros((n_ant * n_ant, 4))
    counts = np.zeros((n_ant * n_ant, 4))
    with open_ms(ms) as tab:
        if column not in tab.colnames():
            raise InputError(f"{ms}: has no {column} column to analyse")
        for chunk in read_chunks(tab, ["ANTENNA1", "ANTENNA2", "FLAG", column]):
            a1, a2 = chunk["ANTENNA1"], chunk["ANTENNA2"]
            good = ~chunk["FLAG"]
            amp = np.abs(chunk[column]) * good
            index = np.minimum(a1, a2) * n_ant + np.maximum(a1, a2)
            for c, k in enumerate(corr_index):
                sums[:, c] += np.bincount(index, amp[:, :, k].sum(axis=1), minlength=n_ant * n_ant)
                counts[:, c] += np.bincount(index, good[:, :, k].sum(axis=1), minlength=n_ant * n_ant)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, sums / counts, np.nan).reshape(n_ant, n_ant, 4)
    mean[np.tril_indices(n_ant)] = np.nan  # autocorrelations and the lower triangle
    return mean


def rolling_envelope(values: np.ndarray, window: int, sigma: float) -> np.ndarray:
    """Rolling median + sigma x 1.4826 x rolling MAD over ``window`` neighbours (np.median's definition,
    so an even window averages its two middle values); windows are clamped inside the ends."""
    from scipy.ndimage import median_filter, rank_filter

    n = values.size
    w = max(1, min(window, n))
    clamp = np.clip(np.arange(n), w // 2, n - w + w // 2)  # the centre of each point's (full) window

    def rolling_median(x: np.ndarray) -> np.ndarray:
        if w % 2:
            return median_filter(x, size=w, mode="nearest")[clamp]
        low = rank_filter(x, w // 2 - 1, size=w, mode="nearest")
        return ((low + rank_filter(x, w // 2, size=w, mode="nearest")) / 2)[clamp]

    median = rolling_median(values)
    mad = rolling_median(np.abs(values - median))
    return median + sigma * MAD_TO_SIGMA * mad


def _pairs(mask: np.ndarray) -> list[tuple[int, int]]:
    return [(int(p), int(q)) for p, q in zip(*np.nonzero(mask))]


def amp_vs_uv_outliers(mean: np.ndarray, lengths: np.ndarray, min_length: float, sigma: float,
                       window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list]:
    """Analysis 1: (n_ant, n_ant) mask of outliers, the mask of baselines fitted, the dead antennas, and
    per correlation the (sorted lengths, envelope) curve."""
    n_ant = mean.shape[0]
    xx = mean[:, :, 0]
    full = np.where(np.isnan(xx), xx.T, xx)  # symmetric; NaN on the diagonal and where all is flagged
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: fully flagged antennas
        dead = np.flatnonzero(np.nanmedian(full, axis=1) < DEAD_FRACTION * np.nanmedian(full))
    upper = np.triu(np.ones((n_ant, n_ant), dtype=bool), k=1)
    involved = np.isin(np.arange(n_ant), dead)
    usable = upper & (lengths >= min_length) & ~involved[:, None] & ~involved[None, :]
    outliers = np.zeros((n_ant, n_ant), dtype=bool)
    curves = []
    for c in range(4):
        fit = usable & np.isfinite(mean[:, :, c])
        p, q = np.nonzero(fit)
        order = np.argsort(lengths[p, q], kind="stable")
        amp = mean[p, q, c][order]
        envelope = rolling_envelope(amp, window, sigma) if amp.size else amp
        above = amp > envelope
        outliers[p[order][above], q[order][above]] = True
        curves.append((lengths[p, q][order], envelope))
    return outliers, usable, dead, curves


def heatmap_outliers(mean: np.ndarray, keep: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Analysis 2: outliers of the cross-hand mean among ``keep``; also the matrix and the threshold."""
    cross = (mean[:, :, 1] + mean[:, :, 2]) / 2
    cross = np.where(keep, cross, np.nan)
    valid = cross[np.isfinite(cross)]
    if valid.size == 0:
        return np.zeros(cross.shape, dtype=bool), cross, np.nan
    median = float(np.median(valid))
    threshold = median + sigma * MAD_TO_SIGMA * float(np.median(np.abs(valid - median)))
    return np.nan_to_num(cross, nan=-np.inf) > threshold, cross, threshold


def bad_antennas_of(bad: np.ndarray, fraction: float) -> list[int]:
    """Antennas with more than ``fraction`` of their n_ant - 1 baselines bad."""
    per_antenna = bad.sum(axis=0) + bad.sum(axis=1)
    return [int(a) for a in np.flatnonzero(per_antenna > fraction * (bad.shape[0] - 1))]


# --- flagging and output ---------------------------------------------------------------------------
def flag_baselines(ms: str | Path, antennas: list[int], pairs: list[tuple[int, int]]) -> int:
    """Flag every row of ``antennas`` and of the baselines ``pairs``; returns rows flagged."""
    names, _ = antenna_positions(ms)
    n_ant = len(names)
    bad = np.zeros(n_ant * n_ant, dtype=bool)
    for a in antennas:
        bad[a * n_ant:(a + 1) * n_ant] = True
        bad[a::n_ant] = True
    for p, q in pairs:
        bad[min(p, q) * n_ant + max(p, q)] = True

    def hit_of(chunk):
        a1, a2 = chunk["ANTENNA1"], chunk["ANTENNA2"]
        return bad[np.minimum(a1, a2) * n_ant + np.maximum(a1, a2)]

    with open_ms(ms, readonly=False) as tab:
        return flag_rows_where(tab, ["ANTENNA1", "ANTENNA2"], hit_of)


def _plots(mean, lengths, usable, uv_bad, curves, cross, hm_bad, bad_ants, qa_dir: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    uv_png, heat_png = qa_dir / HOT_BASELINES_UV_PLOT, qa_dir / HOT_BASELINES_HEATMAP
    fig, axes = plt.subplots(2, 2, figsize=(14, 10))
    for c, ax in enumerate(axes.flat):
        p, q = np.nonzero(usable & np.isfinite(mean[:, :, c]))
        ax.plot(lengths[p, q], mean[p, q, c], ",", color="royalblue", label="fitted")  # pixels: fast for 62k
        ax.plot(*curves[c], color="lime", label="envelope")
        bp, bq = np.nonzero(uv_bad & np.isfinite(mean[:, :, c]))
        ax.scatter(lengths[bp, bq], mean[bp, bq, c], s=25, c="red", marker="x", label="outlier")
        ax.set(title=CORR_NAMES[LINEAR_CORR_TYPES[c]], xlabel="baseline length (m)", ylabel="mean |V|")
        if (mean[p, q, c] > 0).any():  # a log axis of nothing is a matplotlib error
            ax.set_yscale("log")
        ax.legend(fontsize=8, loc="upper right")  # "best" is slow with 62k points
    fig.tight_layout()
    fig.savefig(uv_png, dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(8, 7))
    image = ax.imshow(cross.T, origin="lower", cmap="inferno", interpolation="nearest")
    fig.colorbar(image, ax=ax, label="(|XY| + |YX|) / 2")
    p, q = np.nonzero(hm_bad)
    ax.scatter(p, q, s=40, facecolors="none", edgecolors="cyan", label="heatmap outlier")
    p, q = np.nonzero(uv_bad)
    ax.scatter(p, q, s=40, marker="x", c="magenta", label="amp-vs-uv outlier")
    for a in bad_ants:
        ax.axvline(a, color="lime", alpha=0.4)
        ax.axhline(a, color="lime", alpha=0.4)
    ax.set(xlabel="antenna 1 (correlator index)", ylabel="antenna 2", title="cross-hand mean |V|")
    ax.legend(fontsize=8, loc="upper left")
    fig.savefig(heat_png, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return [str(uv_png), str(heat_png)]


def _report(path: Path, ms, names, options: dict, min_length, dead, uv_pairs, hm_pairs, threshold, bad_ants,
            flag_pairs, rows, warnings_: list[str]) -> None:
    def label(p, q):
        return f"{p}-{q} ({names[p]}-{names[q]})"

    lines = [f"Hot-baseline report for {ms}",
             f"options: {options}",
             *(f"{WARNING_PREFIX}{w}" for w in warnings_),
             f"baselines shorter than {min_length:.2f} m ignored; dead antennas left out of the fit: {list(map(int, dead))}",
             "", f"[amplitude vs baseline length] {len(uv_pairs)} outliers"]
    lines += [f"  {label(p, q)}" for p, q in uv_pairs]
    lines += ["", f"[cross-hand heatmap] threshold {threshold:.4g}; {len(hm_pairs)} outliers"]
    lines += [f"  {label(p, q)}" for p, q in hm_pairs]
    lines += ["", f"[bad antennas] {len(bad_ants)}: " + ", ".join(f"{a} ({names[a]})" for a in bad_ants)]
    lines += ["", f"[flagged] {len(bad_ants)} antennas, {len(flag_pairs)} further baselines, {rows} rows"]
    path.write_text("\n".join(lines) + "\n")


def find_hot_baselines(ms: str | Path, qa_dir: str | Path, column: str = "CORRECTED_DATA", uv_sigma: float = 7.0,
                       sigma: float = 5.0, uv_cut_lambda: float = 4.0, antenna_fraction: float = 0.25,
                       uv_window: int = 400, apply_flags: bool = True) -> Result:
    """Run both analyses on ``ms``, write the report and plots to ``qa_dir``, flag what they find."""
    ms, qa_dir = Path(ms), Path(qa_dir)
    options = dict(column=column, uv_sigma=uv_sigma, sigma=sigma, uv_cut_lambda=uv_cut_lambda,
                   antenna_fraction=antenna_fraction, uv_window=uv_window, apply_flags=apply_flags)
    done = msstate.done_info(ms, "hot-baselines")
    if done is not None and done.get("options") == options:
        log(_logger, "already analysed and flagged", ms=str(ms))
        return Result(**done["result"], reused=True)
    names, itrf = antenna_positions(ms)
    mean = mean_amplitudes(ms, column)
    lengths = np.linalg.norm(itrf[:, None, :] - itrf[None, :, :], axis=2)
    min_length = uv_cut_lambda * C_M_S / float(np.mean(np.concatenate(spectral_windows(ms))))
    uv_bad, usable, dead, curves = amp_vs_uv_outliers(mean, lengths, min_length, uv_sigma, uv_window)
    fitted = int((usable[:, :, None] & np.isfinite(mean)).any(axis=2).sum())
    warnings_ = [] if fitted else [f"no usable baseline: none unflagged, longer than {min_length:.1f} m and "
                                   "free of dead antennas; nothing judged, nothing flagged"]
    if warnings_:
        log(_logger, warnings_[0], logging.WARNING, ms=str(ms))
    keep = np.triu(lengths >= min_length, k=1) & ~uv_bad
    hm_bad, cross, threshold = heatmap_outliers(mean, keep, sigma)
    all_bad = uv_bad | hm_bad
    bad_ants = bad_antennas_of(all_bad, antenna_fraction)
    flag_pairs = [(p, q) for p, q in _pairs(all_bad) if p not in bad_ants and q not in bad_ants]
    qa_dir.mkdir(parents=True, exist_ok=True)
    plots = _plots(mean, lengths, usable, uv_bad, curves, cross, hm_bad, bad_ants, qa_dir)
    rows = flag_baselines(ms, bad_ants, flag_pairs) if apply_flags else 0
    report = qa_dir / HOT_BASELINES_REPORT
    _report(report, ms, names, options, min_length, dead, _pairs(uv_bad), _pairs(hm_bad), threshold, bad_ants,
            flag_pairs, rows, warnings_)
    result = Result(ms_path=str(ms), report=str(report), plots=plots, uv_outliers=_pairs(uv_bad),
                    heatmap_outliers=_pairs(hm_bad), bad_antennas=bad_ants, flagged_baselines=flag_pairs,
                    rows_flagged=rows, warnings=warnings_)
    if apply_flags:
        msstate.record_done(ms, "hot-baselines", {"options": options, "result": result.model_dump(exclude={"reused"})})
    log(_logger, "hot baselines", ms=str(ms), n_uv=len(result.uv_outliers), n_heatmap=len(result.heatmap_outliers),
        bad_antennas=bad_ants, rows_flagged=rows)
    return result


def run(options: Options) -> Result:
    work_dir = Path(options.work_dir) if options.work_dir else Path(options.ms).parent
    with step_timer("hot-baselines", work_dir):
        return find_hot_baselines(options.ms, work_dir / QA_FOLDER, **options.model_dump(exclude={"ms", "work_dir"}))

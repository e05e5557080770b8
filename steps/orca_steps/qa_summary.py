"""Step ``qa-summary``: one self-contained HTML page per unit, to judge the hour at a glance.

It reads what the Phase 2 steps left in the work dir (QA CSVs and plots, the dewarp and transient
summaries, photometry tables, ``timings.jsonl``, ``provenance.json``) and writes ``QA/index.html`` with
every plot embedded (base64 PNG), so the archived page opens anywhere. At the top: a status line and a
table of every step, ok / attention / failed / skipped / not run. A step whose products are missing is
shown as "not run" (or failed, when its timer says so); an unreadable product is reported on the page.
The page never fails because a step did not run.
"""
from __future__ import annotations

import base64
import csv
import html
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from .collect_ms import PHASE1_FILE
from .concat import concat_paths
from .errors import InputError
from .fileio import write_atomic
from .hot_baselines import WARNING_PREFIX
from .labels import LstLabel, ObsDate, RunLabel, Subband
from .logs import step_timer
from .pipeline import PHASE2
from .refusals import phase1_refused, refused_ms
from .skyimage import load_image
from .wsclean import site_recipes
from . import qa_pictures
from .products import (CUBE_FOLDER, DEWARP_PLOT, DEWARP_RECORD, FLUX_CHECK_CSV, FLUX_CHECK_PLOT, HOT_BASELINES_HEATMAP,
                       HOT_BASELINES_REPORT, HOT_BASELINES_UV_PLOT, IMAGE_NOISE_CSV, MOVIE_FOLDER, PARTIAL_MARKER,
                       PHOTOMETRY_FOLDER, PHOTOMETRY_SUMMARY, PROVENANCE, QA_FOLDER, QA_PAGE, QA_STATUS, TIMINGS,
                       TRANSIENT_CANDIDATES, TRANSIENT_SUMMARY, TRANSIENTS_FOLDER, snapshot_qa_csv, snapshot_qa_subband,
                       snapshot_rms_plot)

# worst first: the page's status is the worst of its steps
STATES = ("failed", "attention", "not run", "ok", "skipped")
COLOURS = {"failed": "#c62828", "attention": "#ef6c00", "not run": "#757575", "ok": "#2e7d32", "skipped": "#9e9e9e"}
UNREADABLE = (OSError, ValueError, KeyError, TypeError, csv.Error, json.JSONDecodeError)


def phase2_steps() -> list[str]:
    """Phase 2's steps in order (pipeline.PHASE2), without this page and the archive that follows it."""
    return [s.name for s in PHASE2 if s.name not in ("qa-summary", "archive")]


class Options(BaseModel):
    """Named as the unit's parameters, so that process-subband fills them; the switches say what was off."""
    work_dir: str = Field(description="unit work dir (QA/, photometry/, transients/, timings.jsonl, provenance.json)")
    subband: Subband | None = Field(None, description="subband label, names the snapshot QA files (default: any)")
    lst_label: LstLabel | None = Field(None, description="LST hour, for the heading")
    obs_date: ObsDate | None = Field(None, description="observation date, for the heading")
    run_label: RunLabel | None = Field(None, description="pipeline run label, for the heading")
    hot_baselines: bool = Field(False, description="hot-baseline diagnostics were on")
    clean_snapshots: bool = Field(False, description="CLEANed snapshots were on")
    compress_snapshots: bool = Field(False, description="snapshot compression was on")
    skip_science: bool = Field(False, description="the science steps were switched off")
    snapshot_only: bool = Field(False, description="only snapshots were made (no science images, no cube)")
    cube_only: bool = Field(False, description="only the cube was made")
    cube: bool = Field(False, description="the spectral cube was on")
    flux_tolerance: float = Field(0.10, description="flux-check ratios further than this from 1 need attention")
    max_bad_snapshot_fraction: float = Field(0.25, description="more flagged snapshots than this need attention")
    max_deep_rms_jy: float = Field(1e4, description="a deep image whose rms above the horizon mask exceeds this "
                                   "(Jy/beam) is absurd for any subband: the unit fails QA")
    max_deep_peak_jy: float = Field(1e6, description="a deep image whose peak |pixel| exceeds this (Jy/beam; Cyg A "
                                    "is ~2e4 Jy at 74 MHz) is absurd: the unit fails QA")
    max_rows: int = Field(25, description="longest table shown in full (longer ones are cut, with a note)")


class Result(BaseModel):
    html: str
    status: str = Field(description="worst step state: failed, attention, not run, ok")
    steps: dict[str, str] = Field(description="step -> ok / attention / failed / skipped / not run")


@dataclass
class Section:
    step: str
    title: str
    state: str
    summary: str
    body: str = ""


# ---------------------------------------------------------------- HTML pieces

def esc(value) -> str:
    return html.escape(str(value))


def badge(state: str) -> str:
    return f'<span class="badge" style="background:{COLOURS[state]}">{esc(state)}</span>'


def table(rows: list[dict], columns: list[str], max_rows: int) -> str:
    if not rows:
        return "<p class='note'>(no rows)</p>"
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{esc(r.get(c, ''))}</td>" for c in columns) + "</tr>" for r in rows[:max_rows])
    more = f"<p class='note'>{len(rows) - max_rows} more rows not shown</p>" if len(rows) > max_rows else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def image(path: Path, alt: str) -> str:
    """The PNG embedded as a data URI, so the page is one file."""
    if not path.is_file():
        return f"<p class='note'>(plot {esc(path.name)} missing)</p>"
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def fmt(value, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}g}"
    except (TypeError, ValueError):
        return str(value)


# ---------------------------------------------------------------- state of the unit

class Unit:
    """What the work dir holds: timers and product paths; turns absence into 'not run' / 'failed' / 'skipped'."""

    def __init__(self, options: Options):
        self.opts = options
        self.work = Path(options.work_dir)
        self.qa = self.work / QA_FOLDER
        self.timings, self.timing_problem = self._read_timings()
        self.last = {t.get("step"): t for t in self.timings}
        self.steps = phase2_steps()
        self.skipped = [s.name for s in PHASE2 if not s.enabled(options)]

    def _read_timings(self) -> tuple[list[dict], str]:
        path = self.work / TIMINGS
        if not path.is_file():
            return [], ""
        records, bad = [], 0
        for line in path.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
        return records, f"{bad} unreadable lines in timings.jsonl" if bad else ""

    def timer_state(self, step: str) -> str | None:
        record = self.last.get(step)
        return None if record is None else ("failed" if record.get("status") == "failed" else "ok")

    def absent(self, step: str, title: str) -> Section:
        """A section whose products are missing: failed, skipped or not run."""
        if self.timer_state(step) == "failed":
            return Section(step, title, "failed", f"{step} failed; see its log", "<p>The step failed.</p>")
        if step in self.skipped:
            return Section(step, title, "skipped", "switched off for this unit", "<p>Switched off for this unit.</p>")
        return Section(step, title, "not run", "no products", "<p>Not run: no products in the work dir.</p>")

    def unreadable(self, step: str, title: str, path: Path, exc: Exception) -> Section:
        return Section(step, title, "attention", f"{path.name} unreadable",
                       f"<p>{esc(path)} could not be read: {esc(exc)}</p>")

    def judged(self, step: str, state: str) -> str:
        """A product's own judgement, overridden by a failed timer (a failure after stale products)."""
        return "failed" if self.timer_state(step) == "failed" else state


# ---------------------------------------------------------------- sections

def snapshot_section(u: Unit) -> Section:
    step, title = "snapshot-qa", "Snapshot QA"
    files = sorted(u.qa.glob(snapshot_qa_csv(u.opts.subband or "*")))
    if not files:
        return u.absent(step, title)
    try:
        rows = read_csv(files[0])
        bad = [r for r in rows if r["bad"] == "1"]
        rms = np.array([float(r["rms"]) for r in rows])
    except UNREADABLE as exc:
        return u.unreadable(step, title, files[0], exc)
    frac = len(bad) / len(rows) if rows else 1.0
    state = "attention" if frac > u.opts.max_bad_snapshot_fraction else "ok"
    summary = f"{len(bad)} of {len(rows)} snapshots flagged; median rms {fmt(np.median(rms)) if rows else '-'} Jy/beam"
    plot = u.qa / snapshot_rms_plot(snapshot_qa_subband(files[0].name))
    body = (image(plot, "snapshot rms") + "<h4>Flagged snapshots</h4>"
            + table(bad, ["file", "utc", "rms", "peak", "reason"], u.opts.max_rows))
    return Section(step, title, u.judged(step, state), summary, body)


def hot_baselines_section(u: Unit) -> Section:
    step, title = "hot-baselines", "Hot baselines"
    report = u.qa / HOT_BASELINES_REPORT
    if not report.is_file():
        return u.absent(step, title)
    text = report.read_text(errors="replace")
    flagged = [ln for ln in text.splitlines() if ln.startswith("[flagged]")]
    summary = "flagged" + flagged[0][len("[flagged]"):] if flagged else "report written"
    warned = [ln[len(WARNING_PREFIX):] for ln in text.splitlines() if ln.startswith(WARNING_PREFIX)]
    summary = "; ".join(warned + [summary])
    body = (image(u.qa / HOT_BASELINES_UV_PLOT, "amplitude vs uv length")
            + image(u.qa / HOT_BASELINES_HEATMAP, "cross-hand heatmap")
            + f"<details><summary>Full report</summary><pre>{esc(text)}</pre></details>")
    return Section(step, title, u.judged(step, "attention" if warned else "ok"), summary, body)


def flux_section(u: Unit) -> Section:
    step, title = "flux-check", "Flux-scale check"
    path = u.qa / FLUX_CHECK_CSV
    if not path.is_file():
        return u.absent(step, title)
    try:
        rows = read_csv(path)
        ratios = [float(r["ratio"]) for r in rows if r["status"] == "ok"]
    except UNREADABLE as exc:
        return u.unreadable(step, title, path, exc)
    off = [r["name"] for r in rows if r["status"] == "ok" and abs(float(r["ratio"]) - 1) > u.opts.flux_tolerance]
    state = "attention" if off or not ratios else "ok"
    others: dict[str, int] = {}
    for r in rows:
        if r["status"] != "ok":
            others[r["status"].split(" (")[0]] = others.get(r["status"].split(" (")[0], 0) + 1
    summary = f"{len(ratios)} calibrators fitted" + (f", median ratio {np.median(ratios):.3f}" if ratios else "")
    summary += "".join(f"; {n} {why}" for why, n in others.items())
    if off:
        summary += f"; off by more than {u.opts.flux_tolerance:.0%}: {', '.join(off)}"
    body = (image(u.qa / FLUX_CHECK_PLOT, "flux ratios")
            + table(rows, ["name", "elevation_deg", "expected_jy", "integrated_jy", "ratio", "offset_arcmin", "status"],
                    u.opts.max_rows))
    return Section(step, title, u.judged(step, state), summary, body)


def noise_section(u: Unit) -> Section:
    step, title = "flux-check", "Image noise"
    path = u.qa / IMAGE_NOISE_CSV
    if not path.is_file():
        return u.absent(step, title)
    try:
        rows = read_csv(path)
        shown = [{"stokes": r["stokes"], "inner_rms_jy": fmt(r["inner_rms_jy"], 4), "image": Path(r["image"]).name}
                 for r in rows]
    except UNREADABLE as exc:
        return u.unreadable(step, title, path, exc)
    summary = ", ".join(f"{r['stokes']} {r['inner_rms_jy']} Jy/beam" for r in shown)
    return Section(step, title, u.judged(step, "ok"), f"inner rms {summary}",
                   table(shown, ["stokes", "inner_rms_jy", "image"], u.opts.max_rows))


def dewarp_section(u: Unit) -> Section:
    step, title = "dewarp", "Ionospheric dewarping"
    path = u.qa / DEWARP_RECORD
    if not path.is_file():
        return u.absent(step, title)
    try:
        res = json.loads(path.read_text())
        status, n_anchors = res["status"], res["n_anchors"]
    except UNREADABLE as exc:
        return u.unreadable(step, title, path, exc)
    if status == "ok":
        summary = (f"{n_anchors} anchors; offset {fmt(res.get('rms_offset_arcmin'))}' rms before, "
                   f"{fmt(res.get('loo_rms_arcmin'))}' after (leave-one-out)")
    else:
        summary = f"{status}: images not dewarped"
    rows = [{"quantity": k, "value": "-" if v is None else fmt(v) if isinstance(v, float) else v}
            for k, v in res.items() if not isinstance(v, list) and k != "deep_image"]
    rows.append({"quantity": "dewarped images", "value": len(res.get("dewarped", []))})
    body = ((image(u.qa / DEWARP_PLOT, "anchor offsets") if status == "ok" else "")
            + table(rows, ["quantity", "value"], u.opts.max_rows))
    return Section(step, title, u.judged(step, "ok" if status == "ok" else "attention"), summary, body)


def photometry_section(u: Unit) -> Section:
    step, title = "photometry", "Target photometry"
    path = u.work / PHOTOMETRY_FOLDER / PHOTOMETRY_SUMMARY
    if not path.is_file():
        return u.absent(step, title)
    try:
        rows = read_csv(path)
        per_target: dict[str, dict] = {}
        for r in rows:
            t = per_target.setdefault(r["target"], {"target": r["target"], "kind": r["kind"], "measured": 0,
                                                    "best |snr| I": "", "best |snr| V": "", "detections": 0})
            if r["status"] == "ok":
                t["measured"] += 1
                key = f"best |snr| {r['stokes']}"
                if key in t and (t[key] == "" or abs(float(r["snr"])) > abs(float(t[key]))):
                    t[key] = r["snr"]
            elif t["measured"] == 0:
                t["note"] = r["status"]
            t["detections"] += r["detected"] == "True"
        detections = [r for r in rows if r["detected"] == "True"]
    except UNREADABLE as exc:
        return u.unreadable(step, title, path, exc)
    summary = f"{len(per_target)} targets, {sum(t['measured'] > 0 for t in per_target.values())} measured, " \
              f"{len(detections)} detections"
    plots = "".join(image(u.work / PHOTOMETRY_FOLDER / f"{_safe(name)}.png", name)
                    for name in sorted({d["target"] for d in detections})[:6])
    body = (table(list(per_target.values()),
                                              ["target", "kind", "measured", "best |snr| I", "best |snr| V", "detections",
                                               "note"], u.opts.max_rows)
            + "<h4>Detections</h4>" + table(detections, ["target", "image", "stokes", "time_utc", "peak_jy", "rms_jy", "snr"],
                                            u.opts.max_rows) + plots)
    return Section(step, title, u.judged(step, "ok"), summary, body)


def _safe(name: str) -> str:
    from .photometry import safe_name

    return safe_name(name)


def transient_section(u: Unit) -> Section:
    step, title = "transient-search", "Transient candidates"
    folder = u.work / TRANSIENTS_FOLDER
    path = folder / TRANSIENT_CANDIDATES
    if not path.is_file():
        return u.absent(step, title)
    try:
        rows = read_csv(path)
        rows.sort(key=lambda r: -abs(float(r["snr"])))
        info = json.loads((folder / TRANSIENT_SUMMARY).read_text()) if (folder / TRANSIENT_SUMMARY).is_file() else {}
    except UNREADABLE as exc:
        return u.unreadable(step, title, path, exc)
    quality = info.get("quality", "unknown")
    summary = f"{len(rows)} candidates, quality {quality}"
    if "n_rejected_bilobed" in info:
        summary += f", {info['n_rejected_bilobed']} bi-lobed artefacts rejected"
    plot = candidate_cutouts(rows[:8], u.qa / "transient_candidates.png") if rows else None
    body = ((image(plot, "candidate cutouts") if plot else "")
            + table(rows, ["id", "kind", "image", "stokes", "time_utc", "ra_deg", "dec_deg", "peak_jy", "snr", "label"],
                    u.opts.max_rows))
    return Section(step, title, u.judged(step, "ok" if quality == "ok" else "attention"), summary, body)


def candidate_cutouts(rows: list[dict], path: Path) -> Path | None:
    """A strip of the candidates' cutouts (FITS written by transient-search), strongest first."""
    from astropy.io import fits
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for r in rows:
        try:
            with fits.open(r["cutout"]) as hdul:
                panels.append((r, np.asarray(hdul[0].data, dtype=float)))
        except (OSError, KeyError):
            continue
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(2.2 * len(panels), 2.5), squeeze=False)
    for ax, (r, data) in zip(axes[0], panels):
        top = float(np.nanmax(np.abs(data))) if np.isfinite(data).any() else 1.0
        ax.imshow(data, origin="lower", **({"cmap": "RdBu_r", "vmin": -top, "vmax": top} if r["stokes"] == "V"
                                           else {"cmap": "viridis"}))
        ax.set_title(f"{r['id']} {r['kind']}\nSNR {float(r['snr']):.1f}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def timings_section(u: Unit) -> Section:
    if not u.timings:
        return Section("timings", "Step timings", "not run", "no timings.jsonl", "<p>No step timings recorded.</p>")
    rows = [{"step": t.get("step"), "status": t.get("status"), "seconds": fmt(t.get("seconds"), 4),
             "host": t.get("host", ""),
             "started (UTC)": datetime.fromtimestamp(float(t.get("start", 0)), tz=timezone.utc).strftime("%H:%M:%S")}
            for t in u.timings]
    total = sum(float(t.get("seconds") or 0) for t in u.timings)
    failed = [t.get("step") for t in u.timings if t.get("status") == "failed"]
    summary = f"{len(rows)} step runs, {total:.1f} s in all" + (f"; failed: {', '.join(failed)}" if failed else "")
    if u.timing_problem:
        summary += f"; {u.timing_problem}"
    return Section("timings", "Step timings", "attention" if failed or u.timing_problem else "ok", summary,
                   table(rows, list(rows[0]), max(len(rows), u.opts.max_rows)))


def provenance_section(u: Unit) -> Section:
    step, title = "provenance", "Provenance"
    path = u.work / PROVENANCE
    if not path.is_file():
        return u.absent(step, title)
    try:
        prov = json.loads(path.read_text())
        if not isinstance(prov, dict):
            raise ValueError("not a JSON object")
    except UNREADABLE as exc:
        return u.unreadable(step, title, path, exc)
    rows = [{"key": k, "value": v if not isinstance(v, (dict, list)) else f"{len(v)} entries"} for k, v in prov.items()]
    body = (table(rows, ["key", "value"], u.opts.max_rows)
            + f"<details><summary>provenance.json</summary><pre>{esc(json.dumps(prov, indent=1))}</pre></details>")
    return Section(step, title, u.judged(step, "ok"), f"{len(prov)} entries", body)


def judge_deep_image(path: Path, max_rms: float, max_peak: float, skies: dict) -> dict:
    """One deep image's numbers above the horizon mask, and what is absurd about them ("" if nothing).

    ``skies`` keeps the above-the-mask pixels per geometry and time: an hour's deep images share them."""
    img = load_image(path, "deep image")
    key = (img.wcs.to_header_string(), img.data.shape, img.time_s)
    if key not in skies:
        horizon_mask_deg = max(r.options.horizon_mask_deg or 0 for r in site_recipes().science)
        skies[key] = img.elevation_map() > horizon_mask_deg  # NaN (off the sphere) compares False
    pixels = img.data[skies[key]]
    finite = pixels[np.isfinite(pixels)]
    rms = float(np.sqrt(np.mean(finite ** 2))) if finite.size else float("nan")
    peak = float(np.max(np.abs(finite))) if finite.size else float("nan")
    problems = []
    if finite.size < pixels.size:
        problems.append(f"{pixels.size - finite.size} non-finite pixels above the horizon mask")
    if not rms <= max_rms:
        problems.append(f"rms {rms:.3g} Jy/beam > {max_rms:.3g}")
    if not peak <= max_peak:
        problems.append(f"peak {peak:.3g} Jy/beam > {max_peak:.3g}")
    return {"image": path.name, "rms_jy": fmt(rms, 4), "peak_jy": fmt(peak, 4), "problem": "; ".join(problems)}


def deep_images_section(u: Unit) -> Section:
    """A deep image with absurd numbers (a diverged clean, an unpeeled 24-antenna hour) fails the unit."""
    step, title = "science-images", "Deep images"
    deep_folders = sorted({r.folder for r in site_recipes().science if r.folder.endswith("/deep")})
    files = sorted(p for folder in deep_folders for p in (u.work / folder).glob("*-image.fits"))
    if not files:
        return u.absent(step, title)
    try:
        skies = {}
        rows = [judge_deep_image(p, u.opts.max_deep_rms_jy, u.opts.max_deep_peak_jy, skies) for p in files]
    except (InputError, *UNREADABLE) as exc:
        return u.unreadable(step, title, files[0], exc)
    bad = [r for r in rows if r["problem"]]
    summary = (f"{len(bad)} of {len(rows)} deep images absurd: {bad[0]['image']}: {bad[0]['problem']}" if bad
               else f"{len(rows)} deep images, rms and peak plausible")
    return Section(step, title, u.judged(step, "failed" if bad else "ok"), summary,
                   table(rows, ["image", "rms_jy", "peak_jy", "problem"], u.opts.max_rows))


def recipe_changes_section(u: Unit) -> Section:
    """A line per recipe run that the installed WSClean could not run as written (the imaging steps record
    their ``recipe_changes`` in timings.jsonl). Shown as attention; not a step, so the unit's status stands."""
    title = "WSClean recipes"
    changes = list(dict.fromkeys(change for t in u.timings if isinstance(t.get("recipe_changes"), list)
                                 for change in t["recipe_changes"]))
    if not changes:
        return Section("wsclean-recipes", title, "ok", "no recipe was changed for the installed WSClean")
    body = "<ul>" + "".join(f"<li class='recipe-change'>{esc(change)}</li>" for change in changes) + "</ul>"
    return Section("wsclean-recipes", title, "attention",
                   f"{len(changes)} recipe runs changed for the installed WSClean (not orca's recipes as written)",
                   body)


def refused_section(u: Unit) -> Section:
    """Every MS of the hour that Phase 1 failed or concat dropped, with the step that refused it and why."""
    step, title = "concat", "Refused MS"
    records = [u.work / PHASE1_FILE] + ([concat_paths(u.work, u.opts.subband)[1]] if u.opts.subband else [])
    if not any(r.is_file() for r in records):
        return u.absent(step, title)
    rows = refused_ms(u.work, u.opts.subband) if u.opts.subband else phase1_refused(u.work)
    shown = [{"ms": Path(r["ms"]).name, "step": r["step"], "reason": r["reason"]} for r in rows]
    summary = f"{len(rows)} MS refused" if rows else "no MS refused"
    body = table(shown, ["ms", "step", "reason"], u.opts.max_rows) if rows else "<p>Every MS was used.</p>"
    return Section(step, title, u.judged(step, "ok"), summary, body)


def sky_section(u: Unit) -> Section:
    """The images themselves: deep I and V, one 10-minute image, one snapshot, measured sources circled."""
    step, title = "science-images", "Sky pictures"
    try:
        shown = qa_pictures.pictures(u.work)
    except UNREADABLE + (InputError,) as exc:
        return u.unreadable(step, title, u.work, exc)
    drawn = [(t, i, p, n) for t, i, p, n in shown if p is not None]
    if not drawn:
        return u.absent(step, title)
    body = "".join(f"<figure>{image(png, t)}<figcaption>{esc(t)}: {esc(img.name)}; {n} measured sources marked"
                   "</figcaption></figure>" for t, img, png, n in drawn)
    missing = [t for t, _, p, _ in shown if p is None]
    body += f"<p class='note'>Not available: {esc(', '.join(missing))}</p>" if missing else ""
    return Section(step, title, u.judged(step, "ok"), f"{len(drawn)} pictures", body)


def products_section(step: str, title: str, u: Unit, kind: str) -> Section:
    """Links (relative, so they hold in the archive too) to the unit's movies or cubes."""
    links = [p for p in qa_pictures.product_links(u.work) if p.parts[0] == kind.split("/")[0]]
    if not links:
        if u.timer_state(step) == "ok":
            return Section(step, title, "ok", f"no {kind} (too few snapshots)", "<p>None made.</p>")
        return u.absent(step, title)
    items = "".join(f"<li><a href='../{esc(p.as_posix())}'>{esc(p.as_posix())}</a></li>" for p in links)
    return Section(step, title, u.judged(step, "ok"), f"{len(links)} files", f"<ul>{items}</ul>")


def movies_section(u: Unit) -> Section:
    return products_section("movies", "Snapshot movies", u, MOVIE_FOLDER)


def cube_section(u: Unit) -> Section:
    return products_section("cube", "Spectral cube", u, CUBE_FOLDER)


SECTIONS = (refused_section, sky_section, snapshot_section, movies_section, cube_section, hot_baselines_section,
            deep_images_section, recipe_changes_section, dewarp_section, photometry_section, transient_section,
            flux_section, noise_section, provenance_section, timings_section)

CSS = """
body{font-family:sans-serif;margin:1.5em;max-width:1100px;color:#222}
h1{margin-bottom:0.2em} h2{border-bottom:1px solid #ccc;padding-bottom:0.2em;margin-top:1.6em}
.banner{padding:0.8em 1em;color:white;font-size:1.3em;font-weight:bold;border-radius:4px}
.badge{color:white;padding:0.1em 0.5em;border-radius:3px;font-size:0.9em;white-space:nowrap}
table{border-collapse:collapse;margin:0.5em 0;font-size:0.9em}
td,th{border:1px solid #ddd;padding:0.25em 0.6em;text-align:left} th{background:#f3f3f3}
img{max-width:100%;margin:0.4em 0;display:block} .note{color:#666;font-style:italic}
.summary{font-weight:bold}
pre{background:#f7f7f7;padding:0.6em;overflow-x:auto;font-size:0.85em}
"""


def step_states(u: Unit, sections: list[Section]) -> dict[str, tuple[str, str]]:
    """Every step of the status table -> (state, one-line summary): its sections' worst, else its timer."""
    out = {}
    for step in u.steps:
        own = [s for s in sections if s.step == step]
        if own:
            worst = min(own, key=lambda s: STATES.index(s.state))
            out[step] = (worst.state, "; ".join(s.summary for s in own))
        elif u.timer_state(step):
            record = u.last[step]
            out[step] = (u.timer_state(step), f"{fmt(record.get('seconds'), 4)} s")
        elif step in u.skipped:
            out[step] = ("skipped", "switched off for this unit")
        else:
            out[step] = ("not run", "no record in timings.jsonl")
    return out


def partial_banner(work: Path) -> str:
    """A partial archive's page says so at the top, with the failure (``products.PARTIAL_MARKER``)."""
    path = work / PARTIAL_MARKER
    if not path.is_file():
        return ""
    try:
        reason = json.loads(path.read_text()).get("error", "")
    except (OSError, json.JSONDecodeError) as exc:
        reason = f"(marker unreadable: {exc})"
    return (f"<div class='banner' id='partial' style='background:{COLOURS['failed']}'>PARTIAL ARCHIVE: "
            f"Phase 2 stopped early; this archive holds only what existed. {esc(reason)}</div>")


def render(u: Unit, sections: list[Section], states: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """The page and its overall status (the worst step state; skipped steps do not count)."""
    counted = [s for s, _ in states.values() if s != "skipped"] or ["not run"]
    overall = min(counted, key=STATES.index)
    counts = {s: sum(v[0] == s for v in states.values()) for s in STATES}
    tally = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    labels = [u.opts.subband, u.opts.lst_label, u.opts.obs_date, u.opts.run_label]
    title = " ".join(x for x in labels if x) or u.work.name
    rows = "".join(f"<tr><td><a href='#{esc(step)}'>{esc(step)}</a></td><td>{badge(state)}</td><td>{esc(text)}</td></tr>"
                   for step, (state, text) in states.items())
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>QA {esc(title)}</title><style>{CSS}</style>"
             "</head><body>",
             f"<h1>QA summary: {esc(title)}</h1>",
             f"<p class='note'>{esc(u.work)} &middot; written {datetime.now(timezone.utc):%Y-%m-%d %H:%M:%S} UTC</p>",
             f"<div class='banner' id='status' style='background:{COLOURS[overall]}'>"
             f"Overall: {esc(overall.upper())} &mdash; {esc(tally)}</div>",
             partial_banner(u.work),
             f"<h2>Steps</h2><table><tr><th>step</th><th>state</th><th>summary</th></tr>{rows}</table>"]
    seen = set()
    for s in sections:
        anchor = f" id='{esc(s.step)}'" if s.step not in seen else ""
        seen.add(s.step)
        parts.append(f"<h2{anchor}>{esc(s.title)} {badge(s.state)}</h2><p class='summary'>{esc(s.summary)}</p>{s.body}")
    parts.append("</body></html>")
    return "\n".join(parts), overall


def qa_summary(options: Options) -> Result:
    """Collect every step's products of the unit into ``<work_dir>/QA/index.html``."""
    if not Path(options.work_dir).is_dir():
        raise InputError(f"{options.work_dir}: unit work dir does not exist")
    u = Unit(options)
    sections = [make(u) for make in SECTIONS]
    states = step_states(u, sections)
    page, overall = render(u, sections, states)
    u.qa.mkdir(parents=True, exist_ok=True)
    out = u.work / QA_PAGE
    write_atomic(out, page)
    result = Result(html=str(out), status=overall, steps={k: v[0] for k, v in states.items()})
    write_atomic(u.qa / QA_STATUS, result.model_dump_json(indent=1) + "\n")  # for the night dashboard
    return result


def run(options: Options) -> Result:
    with step_timer("qa-summary", options.work_dir if Path(options.work_dir).is_dir() else None):
        return qa_summary(options)

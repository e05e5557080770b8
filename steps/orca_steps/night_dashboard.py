"""The night dashboard: one HTML page per run, a subband x LST-hour grid coloured by each unit's outcome.

The run report writes it into the run root (``<runs_root>/<run_label>/dashboard-<workflow>.html``). A
unit's outcome comes from its archive (``<archive_root>/<lst>/<date>/<run_label>/<sb>/``): the QA page's
verdict (``QA/qa_status.json``), ``PARTIAL.json`` for a partial archive; units the dispatch queue knows
but that left no archive show the queue's state. Each cell links the unit's QA page (a relative link:
the page opens from Lustre or any copy of both trees). Below the grid: why units and Argo nodes failed,
and each unit's step timings.
"""
from __future__ import annotations

import html
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from . import config
from .fileio import write_atomic
from .products import PARTIAL_MARKER, QA_FOLDER, QA_PAGE, QA_STATUS, TIMINGS

DASHBOARD_INDEX = "dashboards"  # <runs_root>/dashboards/<workflow>.html: the Argo UI's link target
COLOURS = {"ok": "#2e7d32", "attention": "#ef6c00", "not run": "#757575", "partial": "#8e24aa",
           "failed": "#c62828", "pending": "#bdbdbd", "running": "#1565c0"}


@dataclass
class UnitOutcome:
    subband: str
    lst_label: str
    obs_date: str
    outcome: str
    qa_page: Path | None = None
    reason: str = ""
    seconds: float = 0.0
    slowest: str = ""
    steps: dict = field(default_factory=dict)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def archived_unit(path: Path) -> UnitOutcome:
    """The outcome of one archived unit (``<lst>/<date>/<run>/<sb>``)."""
    lst, date, sb = path.parts[-4], path.parts[-3], path.name
    status = _read_json(path / QA_FOLDER / QA_STATUS) or {}
    partial = _read_json(path / PARTIAL_MARKER)
    outcome = "partial" if partial is not None else status.get("status", "not run")
    reason = (partial or {}).get("error", "")
    if not reason and status.get("steps"):
        bad = [s for s, state in status["steps"].items() if state in ("failed", "attention")]
        reason = f"{', '.join(bad)}: {'failed' if outcome == 'failed' else 'attention'}" if bad else ""
    per_step: dict[str, float] = {}
    timings = path / TIMINGS
    if timings.is_file():
        for line in timings.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            per_step[record.get("step", "?")] = per_step.get(record.get("step", "?"), 0.0) + float(record.get("seconds") or 0)
    slowest = max(per_step, key=per_step.get) if per_step else ""
    page = path / QA_PAGE
    return UnitOutcome(sb, lst, date, outcome, page if page.is_file() else None, reason,
                       round(sum(per_step.values()), 1), slowest, per_step)


def collect(archive_root: str | Path, run_label: str, queue_units: list[dict] = ()) -> list[UnitOutcome]:
    """Every unit of the run: archived ones, then queue units without an archive."""
    units = [archived_unit(p) for p in sorted(Path(archive_root).glob(f"*/*/{run_label}/*")) if p.is_dir()
             and not p.name.startswith(".")]
    seen = {(u.subband, u.lst_label, u.obs_date) for u in units}
    for q in queue_units:
        key = (q.get("subband"), q.get("lst_label"), q.get("obs_date"))
        if None not in key and key not in seen:
            units.append(UnitOutcome(*key, outcome=q.get("state", "pending"),
                                     reason=f"queue: {q.get('state')} after {q.get('attempts', 0)} attempt(s)"))
    return units


def _esc(value) -> str:
    return html.escape(str(value))


def render(units: list[UnitOutcome], out: Path, title: str, failed_nodes: list[dict]) -> str:
    """The page; links are relative to ``out``'s folder."""
    subbands = sorted({u.subband for u in units}, key=lambda s: float(s.rstrip("MHz") or 0))
    hours = sorted({(u.obs_date, u.lst_label) for u in units})
    by_cell = {(u.subband, u.obs_date, u.lst_label): u for u in units}

    def link(u: UnitOutcome) -> str:
        return Path(os.path.relpath(u.qa_page, out.parent)).as_posix() if u.qa_page else ""

    head = "".join(f"<th>{_esc(d)}<br>{_esc(h)}</th>" for d, h in hours)
    rows = []
    for sb in subbands:
        cells = []
        for d, h in hours:
            u = by_cell.get((sb, d, h))
            if u is None:
                cells.append("<td class='none'>-</td>")
                continue
            text = _esc(u.outcome) + (f"<br><small>{u.seconds:.0f} s</small>" if u.seconds else "")
            inner = f"<a href='{_esc(link(u))}'>{text}</a>" if u.qa_page else text
            cells.append(f"<td class='cell' data-outcome='{_esc(u.outcome)}' style='background:{COLOURS.get(u.outcome, '#757575')}'"
                         f" title='{_esc(u.reason)}'>{inner}</td>")
        rows.append(f"<tr><th>{_esc(sb)}</th>{''.join(cells)}</tr>")
    counts = {}
    for u in units:
        counts[u.outcome] = counts.get(u.outcome, 0) + 1
    tally = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    reasons = "".join(f"<tr><td>{_esc(u.subband)}</td><td>{_esc(u.lst_label)}</td><td>{_esc(u.outcome)}</td>"
                      f"<td>{_esc(u.reason)}</td></tr>" for u in units if u.reason)
    nodes = "".join(f"<tr><td>{_esc(n.get('displayName', ''))}</td><td>{_esc(n.get('templateName', ''))}</td>"
                    f"<td>{_esc(n.get('message', ''))}</td></tr>" for n in failed_nodes)
    timing = "".join(f"<tr><td>{_esc(u.subband)}</td><td>{_esc(u.lst_label)}</td><td>{u.seconds:.1f}</td>"
                     f"<td>{_esc(u.slowest)} ({u.steps.get(u.slowest, 0):.1f} s)</td></tr>" for u in units if u.steps)
    css = ("body{font-family:sans-serif;margin:1.5em;color:#222} table{border-collapse:collapse;margin:0.5em 0}"
           "td,th{border:1px solid #ccc;padding:0.3em 0.6em;text-align:center} td.cell a,td.cell{color:white}"
           "td.none{color:#999}")
    return "\n".join([
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Night {_esc(title)}</title><style>{css}</style>"
        "</head><body>", f"<h1>Night dashboard: {_esc(title)}</h1>", f"<p id='tally'>{_esc(tally) or 'no units'}</p>",
        f"<h2>Units (subband x LST hour)</h2><table id='grid'><tr><th></th>{head}</tr>{''.join(rows)}</table>",
        "<h2>Failure reasons</h2>" + (f"<table><tr><th>subband</th><th>LST</th><th>outcome</th><th>reason</th></tr>"
                                       f"{reasons}</table>" if reasons else "<p>None.</p>"),
        "<h2>Failed Argo nodes</h2>" + (f"<table><tr><th>node</th><th>template</th><th>message</th></tr>{nodes}</table>"
                                        if nodes else "<p>None.</p>"),
        "<h2>Timings</h2>" + (f"<table><tr><th>subband</th><th>LST</th><th>seconds (all steps)</th><th>slowest step"
                              f"</th></tr>{timing}</table>" if timing else "<p>No timings.</p>"),
        "</body></html>"])


def dashboard_path(site: config.SiteConfig, run_label: str, workflow: str) -> Path:
    return Path(site.runs_root) / run_label / f"dashboard-{workflow}.html"


def index_path(site: config.SiteConfig, workflow: str) -> Path:
    """``<runs_root>/dashboards/<workflow>.html``: found from the workflow's name alone, which is all an
    Argo UI link (``${metadata.name}``) knows; it redirects to the dashboard in the run root."""
    return Path(site.runs_root) / DASHBOARD_INDEX / f"{workflow}.html"


def write_dashboard(site: config.SiteConfig, run_label: str, workflow: str, failed_nodes: list[dict],
                    queue_units: list[dict] = ()) -> Path:
    out = dashboard_path(site, run_label, workflow)
    units = collect(site.archive_root, run_label, queue_units)
    write_atomic(out, render(units, out, f"{run_label} ({workflow})", failed_nodes))
    index = index_path(site, workflow)
    target = _esc(Path(os.path.relpath(out, index.parent)).as_posix())
    write_atomic(index, f"<!DOCTYPE html><html><head><meta charset='utf-8'><meta http-equiv='refresh' content='0; url={target}'>"
                  f"<title>{_esc(workflow)}</title></head><body><a href='{target}'>night dashboard of {_esc(workflow)}"
                  "</a></body></html>")
    return out

"""Units of work (subband, LST hour, date) as seen in a run record, and the final table.

A pod belongs to the unit named by the ``orca/subband``, ``orca/lst`` and ``orca/obs-date`` labels of the
pod or of its workflow (or that workflow's parents). A unit's status is that of the innermost workflow
carrying its labels when there is one (one child workflow per hour), else it follows its pods.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

UNIT_LABELS = ("orca/subband", "orca/lst", "orca/obs-date")


@dataclass
class Unit:
    subband: str
    lst: str
    obs_date: str
    hosts: list[str] = field(default_factory=list)
    status: str = "Pending"
    started: float | None = None
    finished: float | None = None
    pods: dict[str, int] = field(default_factory=lambda: {"Succeeded": 0, "Running": 0, "Failed": 0, "Pending": 0})
    running: list[str] = field(default_factory=list)
    archive: str | None = None
    archive_local: str | None = None
    failed_pods: list[str] = field(default_factory=list)
    workflow: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subband, self.lst, self.obs_date)

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.finished or time.time()) - self.started


def _workflow_labels(wf: dict, by_name: dict[str, dict]) -> dict:
    labels, chain = {}, []
    while wf is not None:
        chain.append(wf)
        wf = by_name.get(wf.get("parent"))
    for w in reversed(chain):
        labels.update(w.get("labels") or {})
    return labels


def _unit_key(labels: dict) -> tuple[str, str, str] | None:
    if labels.get("orca/subband") and labels.get("orca/lst"):
        return (labels["orca/subband"], labels["orca/lst"], labels.get("orca/obs-date", ""))
    return None


def _to_local(path: str, mounts: dict | None) -> str:
    for container, local in sorted((mounts or {}).items(), key=lambda kv: len(kv[0]), reverse=True):
        if path == container or path.startswith(container.rstrip("/") + "/"):
            return local + path[len(container.rstrip("/")):]
    return path


def units(record: dict) -> list[Unit]:
    by_name = {w["name"]: w for w in record["workflows"]}
    found: dict[tuple, Unit] = {}
    for wf in record["workflows"]:
        wf_labels = _workflow_labels(wf, by_name)
        own_key = _unit_key(wf.get("labels") or {})
        if own_key:
            unit = found.setdefault(own_key, Unit(*own_key))
            unit.workflow = wf["name"]
            unit.status = wf["phase"]
        for node in wf["nodes"]:
            if node["type"] not in ("Pod",) or node.get("pod_name") is None:
                continue
            key = _unit_key({**wf_labels, **(node.get("labels") or {})})
            if key is None:
                continue
            unit = found.setdefault(key, Unit(*key))
            if node.get("host") and node["host"] not in unit.hosts:
                unit.hosts.append(node["host"])
            phase = node["phase"]
            bucket = "Failed" if phase in ("Failed", "Error") else phase if phase in unit.pods else None
            if bucket:
                unit.pods[bucket] += 1
            if phase == "Running":
                unit.running.append(node["template"])
            if phase in ("Failed", "Error"):
                unit.failed_pods.append(f"{node['display_name']}: {node['message']}")
            if node.get("started_at"):
                unit.started = min(unit.started or node["started_at"], node["started_at"])
            if node.get("finished_at"):
                unit.finished = max(unit.finished or 0, node["finished_at"])
            for p in (node.get("outputs") or {}).get("parameters") or []:
                if "archive" in p["name"] and phase == "Succeeded" and p["value"]:
                    unit.archive = p["value"]
                    unit.archive_local = _to_local(p["value"], node.get("mounts"))
    for unit in found.values():
        if unit.workflow is None:
            if unit.pods["Running"] or unit.pods["Pending"]:
                unit.status = "Running"
            elif unit.archive:
                unit.status = "Succeeded"
            elif unit.pods["Failed"]:
                unit.status = "Failed"
            elif unit.pods["Succeeded"]:
                unit.status = "Succeeded"
        if unit.status == "Running":
            unit.finished = None
    return sorted(found.values(), key=lambda u: (u.obs_date, u.lst, u.subband))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else f"{seconds // 60}:{seconds % 60:02d}"


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def final_table(record: dict, cwd: Path | None = None) -> str:
    """Unit, node, status, duration and archive path of every unit; then the workflows."""
    cwd = cwd or Path.cwd()
    rows = []
    for u in units(record):
        archive = u.archive_local or u.archive or "-"
        try:
            archive = str(Path(archive).relative_to(cwd)) if archive.startswith("/") else archive
        except ValueError:
            pass
        note = f" ({len(u.failed_pods)} pod(s) failed)" if u.failed_pods and u.status == "Succeeded" else ""
        rows.append([f"{u.subband} {u.lst} {u.obs_date}".strip(), ",".join(u.hosts) or "-", u.status + note,
                     fmt_duration(u.duration), archive])
    text = table(rows, ["UNIT", "NODE", "STATUS", "DURATION", "ARCHIVE"]) if rows else "(no units: no pod carries orca/subband and orca/lst labels)"
    wrows = []
    for wf in record["workflows"]:
        dur = (wf["finished_at"] - wf["started_at"]) if wf.get("finished_at") and wf.get("started_at") else None
        wrows.append([wf["name"], wf.get("workflowTemplate") or "-", wf["phase"], fmt_duration(dur),
                      (wf.get("message") or "")[:80]])
    return text + "\n\n" + table(wrows, ["WORKFLOW", "TEMPLATE", "PHASE", "DURATION", "MESSAGE"])


def unit_spans(record: dict) -> dict[str, list[tuple[float, float, tuple]]]:
    """Per node (hostname): (first pod start, last pod end, unit) of every unit that ran pods there."""
    spans: dict[tuple[str, tuple], list[float]] = {}
    by_name = {w["name"]: w for w in record["workflows"]}
    for wf in record["workflows"]:
        wf_labels = _workflow_labels(wf, by_name)
        for node in wf["nodes"]:
            if node["type"] != "Pod" or not node.get("host") or not node.get("started_at"):
                continue
            key = _unit_key({**wf_labels, **(node.get("labels") or {})})
            if key is None:
                continue
            span = spans.setdefault((node["host"], key), [node["started_at"], node["finished_at"] or time.time()])
            span[0] = min(span[0], node["started_at"])
            span[1] = max(span[1], node["finished_at"] or time.time())
    out: dict[str, list] = {}
    for (host, key), (start, end) in spans.items():
        out.setdefault(host, []).append((start, end, key))
    return {host: sorted(v) for host, v in out.items()}


def node_overlaps(record: dict) -> list[tuple[str, tuple, tuple]]:
    """(node, unit, unit) for every two units whose pods were on one node at the same time."""
    clashes = []
    for host, spans in unit_spans(record).items():
        for i, (s1, e1, k1) in enumerate(spans):
            for s2, e2, k2 in spans[i + 1:]:
                if k1 != k2 and s2 < e1:
                    clashes.append((host, k1, k2))
    return clashes

"""Live progress while a run goes on, like ``argo watch``.

On a terminal the block below is redrawn in place every second: workflows, pods, and one line per unit
with its node, status, pods done/running/failed and the steps running now. Elsewhere (CI, a log file)
one plain line is printed per workflow or pod that starts or ends.
"""
from __future__ import annotations

import re
import shutil
import sys
import time
from typing import TextIO

from .nodes import iso
from .report import _unit_key, _workflow_labels, fmt_duration, table, units

_DIRS = re.compile(r"/(?:[^/,():]+/)+")


def short_name(display_name: str) -> str:
    """A node's display name with the folders of path-like loop items left out."""
    return _DIRS.sub("", display_name)


class Progress:
    def __init__(self, runner, stream: TextIO = sys.stderr, live: bool | None = None):
        self.runner = runner
        self.stream = stream
        self.live = stream.isatty() if live is None else live
        self.seen: dict[str, str] = {}
        self.lines_drawn = 0

    def tick(self) -> None:
        record = self.runner.record()
        if self.live:
            self._redraw(record)
        else:
            self._events(record)

    def _summary(self, record: dict) -> str:
        wfs = record["workflows"]
        pods = [n for w in wfs for n in w["nodes"] if n["type"] == "Pod" and n.get("pod_name")]
        count = lambda items, phases: sum(1 for i in items if i["phase"] in phases)  # noqa: E731
        elapsed = fmt_duration(time.time() - record["runner"]["started_at"])
        return (f"elapsed {elapsed}   workflows: {count(wfs, ('Running',))} running, "
                f"{count(wfs, ('Succeeded',))} succeeded, {count(wfs, ('Failed', 'Error'))} failed   "
                f"pods: {count(pods, ('Running',))} running, {count(pods, ('Succeeded',))} done, "
                f"{count(pods, ('Failed', 'Error'))} failed")

    def _redraw(self, record: dict) -> None:
        width = shutil.get_terminal_size((120, 40)).columns
        rows = [[f"{u.subband} {u.lst}", ",".join(u.hosts) or "-", u.status,
                 f"{u.pods['Succeeded']}/{u.pods['Running']}/{u.pods['Failed']}", fmt_duration(u.duration),
                 ", ".join(sorted(set(u.running)))[:40] or "-"] for u in units(record)]
        text = self._summary(record)
        if rows:
            text += "\n" + table(rows, ["UNIT", "NODE", "STATUS", "PODS ok/run/fail", "TIME", "RUNNING"])
        lines = [line[:width - 1] for line in text.splitlines()]
        out = ""
        if self.lines_drawn:
            out += f"\x1b[{self.lines_drawn}F"
        out += "".join(f"\x1b[2K{line}\n" for line in lines)
        self.stream.write(out + "\x1b[J")
        self.stream.flush()
        self.lines_drawn = len(lines)

    def _events(self, record: dict) -> None:
        by_name = {w["name"]: w for w in record["workflows"]}
        for wf in record["workflows"]:
            wf_labels = _workflow_labels(wf, by_name)
            key = f"wf:{wf['name']}"
            if wf["phase"] == "Running" and self.seen.get(key) != "Running":
                self._workflow_line(wf)
            for n in wf["nodes"]:
                if n["type"] != "Pod" or not n.get("pod_name"):
                    continue
                shown = n["phase"] if n["phase"] in ("Running", "Succeeded", "Failed", "Error") else None
                if shown is None or self.seen.get(n["id"]) == shown:
                    continue
                self.seen[n["id"]] = shown
                dur = f" {n['duration_s']:.1f}s" if n.get("duration_s") is not None else ""
                msg = f"  {n['message']}" if shown in ("Failed", "Error") and n.get("message") else ""
                unit = _unit_key({**wf_labels, **(n.get("labels") or {})})
                where = f"{unit[0]} {unit[1]} " if unit else ""
                self._line(f"  {where}{short_name(n['display_name'])} [{n['template']}] on {n.get('host') or '-'}: "
                           f"{shown}{dur}{msg}")
            if wf["phase"] != "Running" and self.seen.get(key) != wf["phase"]:
                self._workflow_line(wf)

    def _workflow_line(self, wf: dict) -> None:
        self.seen[f"wf:{wf['name']}"] = wf["phase"]
        msg = f"  {wf['message']}" if wf.get("message") else ""
        self._line(f"workflow {wf['name']} ({wf.get('workflowTemplate') or 'inline'}) {wf['phase']}{msg}")

    def _line(self, text: str) -> None:
        self.stream.write(f"{iso(time.time())[11:19]} {text}\n")
        self.stream.flush()

"""Step ``run-report``: the exit handler of a night (subband-hours, subband-dispatch, nightly).

Writes one JSON report on shared storage: the run's status, every failed Argo node (a failed hour
shows up here while the chain went on) and, in dispatch mode, the queue's units and their states; and
the night dashboard (``night_dashboard``), an HTML page in the run root.

It is the night's ``onExit`` pod and fails when a unit failed, naming the units in the termination
message: Argo puts a failed exit handler's message in the night's status.message when the night's root
succeeded (operator.go:553-558), and a failed pod's message ends with its termination message
(operator.go:1864-1868).
"""
from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from . import config, work_queue
from .fileio import write_json
from .errors import OrcaError
from .labels import check_run_label, check_write_root, path_under
from .logs import get_logger, log, step_timer
from .night_dashboard import write_dashboard

_logger = get_logger("run-report")


class Options(BaseModel):
    workflow: str = Field(description="name of the workflow run")
    run_label: str = Field(description="pipeline run label")
    status: str = Field(description="{{workflow.status}}")
    failures: str = Field("", description="{{workflow.failures}}: JSON list of failed nodes")
    dynamic_run_label: str = Field("", description="dispatch queue to summarise, if any")
    report_file: str = Field("", description="where to write (default <runs_root>/<run_label>/reports/<workflow>.json)")
    termination_log: str = Field("", description="where to write the failed units when any failed "
                                                 "(the pod's /dev/termination-log)")


class Result(BaseModel):
    report_file: str
    dashboard: str = Field(description="the night dashboard (HTML) in the run root")
    status: str
    n_failed_nodes: int
    queue: dict[str, int] = Field(default_factory=dict)
    failed_units: list[str] = Field(default_factory=list, description="'<subband> <LST hour>' of each failed unit")


class UnitsFailed(OrcaError):
    """Some units of the night failed: the night must end Failed, naming them."""


MAX_LISTED_UNITS = 40   # a termination message keeps 4096 bytes
_ITEM_KEY = re.compile(r"(?:\(\d+:|,)(subband|lst_label):([^,)]+)")


def units_from_failures(failures: list[dict]) -> list[tuple[str, str]]:
    """(subband, LST hour) of every failed loop node whose item names both, as static mode's hour nodes do:
    Argo names a map item's node ``step(i:k1:v1,k2:v2)``, keys sorted (operator.go processItem, 4104-4121)."""
    units = []
    for node in failures:
        keys = dict(_ITEM_KEY.findall(node.get("displayName") or ""))
        if "subband" in keys and "lst_label" in keys:
            units.append((keys["subband"], keys["lst_label"]))
    return units


def failed_units_message(units: list[tuple[str, str]]) -> str:
    def order(unit):   # by frequency, then hour
        mhz = unit[0].removesuffix("MHz")
        return (float(mhz) if mhz.replace(".", "", 1).isdigit() else 0.0, unit)
    names = [f"{sb} {lst}" for sb, lst in sorted(set(units), key=order)]
    more = len(names) - MAX_LISTED_UNITS
    return "failed units: " + ", ".join(names[:MAX_LISTED_UNITS]) + (f" and {more} more" if more > 0 else "")


def parse_failures(text: str) -> list[dict]:
    """Argo's failures list; it may arrive JSON-quoted once more, or as 'null' when nothing failed.

    Above 128 KiB Argo's executor passes it as ``@/tmp/argo_arg_N.txt`` (emissary.go): read that file."""
    if text.startswith("@/") and Path(text[1:]).is_file():
        text = Path(text[1:]).read_text()
    value = text.strip()
    for _ in range(2):
        if not value:
            return []
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return [{"message": text}]
        if not isinstance(value, str):
            break
    return value if isinstance(value, list) else []


def run_report(options: Options, site: config.SiteConfig | None = None) -> Result:
    site = site or config.site()
    run_label = check_run_label(options.run_label, "run_label")
    report_file = (check_write_root(options.report_file, "report_file") if options.report_file
                   else path_under(site.runs_root, run_label, "reports",
                                   f"{check_run_label(options.workflow, 'workflow')}.json"))
    failures = parse_failures(options.failures)
    report = {"workflow": options.workflow, "status": options.status, "failed_nodes": failures,
              "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    counts, queue_units = {}, []
    if options.dynamic_run_label:
        queue_file = work_queue.queue_path(site, options.dynamic_run_label)
        released = work_queue.release(queue_file, options.workflow)
        if released:
            log(_logger, "units this run left running are released for a later run", units=released)
        queue = work_queue.load(queue_file)
        counts = work_queue.summary(queue)
        queue_units = queue["units"]
        report["queue"] = {"counts": counts, "units": [
            {k: u[k] for k in ("id", "state", "worker", "claimed_at", "finished_at", "attempts")}
            for u in queue["units"]]}
    units = units_from_failures(failures) + [(u["subband"], u["lst_label"]) for u in queue_units
                                              if u.get("state") != work_queue.SUCCEEDED]
    report["failed_units"] = [f"{sb} {lst}" for sb, lst in units]
    dashboard = write_dashboard(site, run_label, options.workflow, failures, queue_units)
    report["dashboard"] = str(dashboard)
    out = write_json(report_file, report)
    log(_logger, "run report", status=options.status, failed_nodes=len(failures), dashboard=str(dashboard), **counts)
    result = Result(report_file=str(out), dashboard=str(dashboard), status=options.status,
                    n_failed_nodes=len(failures), queue=counts, failed_units=report["failed_units"])
    if units:
        message = failed_units_message(units)
        if options.termination_log:
            Path(options.termination_log).write_text(message)
        raise UnitsFailed(message)
    return result


def run(options: Options) -> Result:
    with step_timer("run-report", workflow=options.workflow):
        return run_report(options)

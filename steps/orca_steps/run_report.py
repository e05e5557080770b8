"""Step ``run-report``: the exit handler of a night (subband-hours, subband-dispatch, nightly).

Writes one JSON report on shared storage: the run's status, every failed Argo node (a failed hour
shows up here while the chain went on) and, in dispatch mode, the queue's units and their states; and
the night dashboard (``night_dashboard``), an HTML page in the run root.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from . import config, work_queue
from .discover import write_json_atomic
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


class Result(BaseModel):
    report_file: str
    dashboard: str = Field(description="the night dashboard (HTML) in the run root")
    status: str
    n_failed_nodes: int
    queue: dict[str, int] = Field(default_factory=dict)


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
    dashboard = write_dashboard(site, run_label, options.workflow, failures, queue_units)
    report["dashboard"] = str(dashboard)
    out = write_json_atomic(report_file, report)
    log(_logger, "run report", status=options.status, failed_nodes=len(failures), dashboard=str(dashboard), **counts)
    return Result(report_file=str(out), dashboard=str(dashboard), status=options.status,
                  n_failed_nodes=len(failures), queue=counts)


def run(options: Options) -> Result:
    with step_timer("run-report", workflow=options.workflow):
        return run_report(options)

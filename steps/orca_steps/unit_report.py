"""Step ``unit-report``: the exit hook of one subband-hour: say what failed, then clean NVMe if asked.

Runs on the unit's node whatever happened to the hour. It writes ``pipeline_report.json`` into the
work dir: the hour's Argo status and every MS that failed or was dropped, each with the step that refused
it and why (Phase 1 from ``phase1.json`` and the failure records, concat from ``<sb>_concat.json``). With ``cleanup_nvme`` it
removes everything else in the work dir, which must lie under the site's NVMe root: the report is
never a reason to touch Lustre.
"""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from . import config
from .collect_ms import PHASE1_FILE
from .fileio import write_json
from .errors import InputError
from .labels import LstLabel, ObsDate, RunLabel, Subband
from .logs import get_logger, log, step_timer
from .refusals import refused_ms

_logger = get_logger("unit-report")
REPORT_FILE = "pipeline_report.json"


class Options(BaseModel):
    work_dir: str = Field(description="NVMe work dir of the hour")
    status: str = Field(description="Argo phase of the hour: Succeeded, Failed, Error, ...")
    workflow: str = Field(description="name of the workflow run")
    subband: Subband
    lst_label: LstLabel
    obs_date: ObsDate
    run_label: RunLabel
    ms_list_file: str = Field(description="JSON list of the hour's source MS")
    cleanup_nvme: bool = Field(False, description="remove the work dir's contents (all but this report)")


class Result(BaseModel):
    report_file: str
    status: str
    n_expected: int
    n_failed_ms: int
    cleaned: bool


def _under(path: Path, root: str) -> bool:
    return Path(root).resolve() in path.resolve().parents


def unit_report(options: Options, site: config.SiteConfig | None = None) -> Result:
    site = site or config.site()
    work = Path(options.work_dir)
    expected = json.loads(Path(options.ms_list_file).read_text()) if Path(options.ms_list_file).is_file() else []
    phase1_file = work / PHASE1_FILE
    phase1 = json.loads(phase1_file.read_text()) if phase1_file.is_file() else None
    failed = phase1["failed"] if phase1 else expected
    refused = refused_ms(work, options.subband, expected)
    report = {"workflow": options.workflow, "status": options.status, "subband": options.subband,
              "lst_label": options.lst_label, "obs_date": options.obs_date, "run_label": options.run_label,
              "n_expected": len(expected), "phase1": phase1 or "phase 1 did not reach collect-ms",
              "failed_ms": failed, "refused_ms": refused,
              "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    cleaned = False
    if options.cleanup_nvme and work.exists():
        if not _under(work, site.nvme_root):
            raise InputError(f"{work}: refusing to clean a work dir outside the NVMe root {site.nvme_root}")
        for entry in work.iterdir():
            if entry.name != REPORT_FILE:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        cleaned = True
    out = write_json(work / REPORT_FILE, report)
    log(_logger, "unit report", status=options.status, failed_ms=len(failed), cleaned=cleaned)
    return Result(report_file=str(out), status=options.status, n_expected=len(expected),
                  n_failed_ms=len(failed), cleaned=cleaned)


def run(options: Options) -> Result:
    with step_timer("unit-report", subband=options.subband, lst=options.lst_label):
        return unit_report(options)

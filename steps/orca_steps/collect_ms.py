"""Step ``collect-ms``: the fan-in between Phase 1 and Phase 2 of one hour.

It reads which MS survived from the markers successful prepare-ms pods leave in the work dir, not from
Argo's aggregated outputs (which leave failed pods out and cannot be resolved at all when every pod
failed). It writes the MS list for Phase 2 and ``phase1.json`` (which MS failed, each with the sub-step
that refused it and why) into the work dir, and fails the hour only when fewer than ``min_ms_fraction``
of the expected MS survived. An MS whose unit is already archived (its NVMe copy cleaned up) counts by its
record alone.
"""
from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel, Field

from .copy_ms import nvme_name
from .fileio import write_json
from .errors import InputError
from .logs import get_logger, log, step_timer
from .prepare_ms import phase1_failure_record, phase1_marker, unit_archived

_logger = get_logger("collect-ms")
PHASE1_FILE = "phase1.json"
NO_RECORD = "no record: the pod was lost, killed or timed out before it could write one"
MS_LIST_FILE = "phase2_ms_paths.json"


class Options(BaseModel):
    ms_list_file: str = Field(description="JSON list of the hour's source MS (what Phase 1 was given)")
    min_ms_fraction: float = Field(0.5, ge=0.0, le=1.0,
                                   description="fail the hour if fewer than this fraction of its MS survived")
    work_dir: str = Field(description="NVMe work dir of the hour")


class Result(BaseModel):
    ms_list_file: str = Field(description="JSON list of the MS for Phase 2 (pass as --ms_paths @file)")
    n_expected: int
    n_prepared: int
    failed_ms: list[str] = Field(description="source MS whose Phase 1 failed")
    failures: list[dict] = Field(description="per failed MS: ms, step (the sub-step that refused it), reason")
    n_dropped: int = Field(description="n_expected - n_prepared (the hour's Prometheus metric)")


def collect_ms(ms_list_file: str, min_ms_fraction: float, work_dir: str) -> Result:
    listed = Path(ms_list_file)
    if not listed.is_file():
        raise InputError(f"{listed}: MS list file does not exist")
    expected = json.loads(listed.read_text())
    candidates = [Path(work_dir) / nvme_name(src) for src in expected]
    archived = unit_archived(work_dir)
    prepared = sorted({str(p) for p in candidates if (p.is_dir() or archived) and phase1_marker(work_dir, p.name).is_file()},
                      key=lambda p: Path(p).name)
    done = {Path(p).name for p in prepared}
    failed = [src for src in expected if nvme_name(src) not in done]
    failures = [{"ms": src, **phase1_failure(work_dir, src)} for src in failed]
    fraction = len(prepared) / len(expected) if expected else 0.0
    record = {"expected": expected, "prepared": prepared, "failed": failed, "failures": failures,
              "fraction": round(fraction, 4), "min_ms_fraction": min_ms_fraction}
    write_json(Path(work_dir) / PHASE1_FILE, record)
    out = write_json(Path(work_dir) / MS_LIST_FILE, prepared)
    log(_logger, "phase 1 collected", n_expected=len(expected), n_prepared=len(prepared), n_failed=len(failed))
    if not prepared or fraction < min_ms_fraction:
        raise InputError(f"{work_dir}: only {len(prepared)} of {len(expected)} MS survived Phase 1 "
                         f"(min_ms_fraction {min_ms_fraction}); failed: "
                         + "; ".join(f"{nvme_name(f['ms'])} ({f['step']}: {f['reason']})" for f in failures[:3])
                         + (" ..." if len(failed) > 3 else ""))
    return Result(ms_list_file=str(out), n_expected=len(expected), n_prepared=len(prepared), failed_ms=failed,
                  failures=failures, n_dropped=len(expected) - len(prepared))


def phase1_failure(work_dir: str | Path, src_ms: str) -> dict:
    """The step that refused ``src_ms`` in Phase 1 and why, from its failure record."""
    try:
        record = json.loads(phase1_failure_record(work_dir, nvme_name(src_ms)).read_text())
        return {"step": record["step"], "reason": record["reason"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {"step": "prepare-ms", "reason": NO_RECORD}


def run(options: Options) -> Result:
    with step_timer("collect-ms", options.work_dir):
        return collect_ms(options.ms_list_file, options.min_ms_fraction, options.work_dir)

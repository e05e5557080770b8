"""Every MS a unit refused, with the step that refused it and why: read by the unit's report and QA page.

Phase 1 failures come from ``phase1.json`` (written by collect-ms) or, when the hour did not get that far,
from the failure records prepare-ms leaves; concat's drops come from ``<sb>_concat.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

from .collect_ms import PHASE1_FILE, phase1_failure
from .concat import concat_paths
from .copy_ms import nvme_name
from .prepare_ms import phase1_marker


def phase1_refused(work_dir: str | Path, expected: list[str] | None = None) -> list[dict]:
    """Phase 1's failed MS as ``{ms, step, reason}``; without ``phase1.json``, every ``expected`` MS not done."""
    try:
        phase1 = json.loads((Path(work_dir) / PHASE1_FILE).read_text())
        failed = phase1["failed"]
    except (OSError, ValueError, KeyError, TypeError):
        failed = [src for src in expected or [] if not phase1_marker(work_dir, nvme_name(src)).is_file()]
    return [{"ms": src, **phase1_failure(work_dir, src)} for src in failed]


def concat_dropped(work_dir: str | Path, subband: str) -> list[dict]:
    """MS concat dropped (bad data, a name that disagrees with the data, a repeated time), with reasons."""
    try:
        record = json.loads(concat_paths(work_dir, subband)[1].read_text())
        return [{"ms": d["path"], "step": "concat", "reason": d["reason"]} for d in record.get("dropped", [])]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def refused_ms(work_dir: str | Path, subband: str, expected: list[str] | None = None) -> list[dict]:
    return phase1_refused(work_dir, expected) + concat_dropped(work_dir, subband)

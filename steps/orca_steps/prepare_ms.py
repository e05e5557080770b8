"""Step ``prepare-ms``: Phase 1 for one MS in one pod (orca's ``prepare_one_ms_task``).

Runs ``pipeline.PHASE1`` in order: stage-refs -> copy -> flag-antennas -> apply-calibration -> peel (if
``peel_sky`` or ``peel_rfi``), each sub-step a function of this module's ``SUB_STEPS``.
The cal tables (and peel models) are read from the work dir's staged ``refs/`` copies, so the ~45
pods of a unit do not all read them from Lustre. Defaults come from the sub-steps' Options.

Records: success writes ``phase1_done/<ms>.json`` last (the options and every sub-step's result); a
refusal writes ``phase1_failed/<ms>.json`` (the sub-step that refused and why) for the unit's report.
A rerun with the same options skips an MS whose success record exists and whose MS is still on NVMe, or
whose unit is already archived (nothing is copied back to NVMe): its records stay as they were, so
antennas found noisy are never re-detected on flagged data as dead.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from . import apply_calibration as apply_step
from . import copy_ms as copy_step
from . import flag_antennas as flag_step
from . import peel as peel_step
from . import stage_refs as stage_step
from .fileio import write_json
from .errors import InputError, as_orca_error
from .labels import WriteRoot
from .logs import get_logger, log, step_timer
from .pipeline import PHASE1
from .provenance import DONE_DIR

_logger = get_logger("prepare-ms")

PHASE1_DONE_DIR = "phase1_done"
PHASE1_FAILED_DIR = "phase1_failed"


def phase1_marker(nvme_work_dir: str | Path, ms_name: str) -> Path:
    """Written last by a successful prepare-ms: the fan-in reads these, not Argo's aggregated outputs."""
    return Path(nvme_work_dir) / PHASE1_DONE_DIR / f"{ms_name}.json"


def phase1_failure_record(nvme_work_dir: str | Path, ms_name: str) -> Path:
    """Written by a prepare-ms that refused its MS: which sub-step, and why."""
    return Path(nvme_work_dir) / PHASE1_FAILED_DIR / f"{ms_name}.json"


def unit_archived(nvme_work_dir: str | Path) -> bool:
    """Phase 2 of this work dir has archived the unit (its archive step's done-marker exists)."""
    return (Path(nvme_work_dir) / DONE_DIR / "archive.json").is_file()

_flag = flag_step.Options.model_fields
_apply = apply_step.Options.model_fields
_peel = peel_step.Options.model_fields


class Options(BaseModel):
    src_ms: str = copy_step.Options.model_fields["src_ms"]
    nvme_work_dir: WriteRoot = copy_step.Options.model_fields["nvme_work_dir"]
    bp_table: str = _apply["bp_table"]
    xy_table: str = _apply["xy_table"]
    peel_sky: bool = _peel["peel_sky"]
    peel_rfi: bool = _peel["peel_rfi"]
    sky_model: str | None = _peel["sky_model"]
    rfi_model: str | None = _peel["rfi_model"]
    peel_maxiter: int = _peel["peel_maxiter"]
    peeliter: int = _peel["peeliter"]
    tolerance: float = _peel["tolerance"]
    minuvw: float = _peel["minuvw"]
    save_peel_solutions: bool = _peel["save_peel_solutions"]
    bad_antennas: list[int] | None = _flag["bad_antennas"]
    flag_csv: str | None = _flag["flag_csv"]
    csv_tolerance_hours: float = _flag["csv_tolerance_hours"]
    on_source_failure: flag_step.OnSourceFailure = _flag["on_source_failure"]
    autodetect: bool = _flag["autodetect"]
    dead_fraction: float = _flag["dead_fraction"]
    noisy_sigma: float = _flag["noisy_sigma"]
    max_usable_freq_hz: float = _apply["max_usable_freq_hz"]
    spw_tolerance_hz: float = _apply["spw_tolerance_hz"]
    subband: str | None = _apply["subband"]


class Result(BaseModel):
    ms_path: str = Field(description="the prepared MS on NVMe")
    stage_refs: stage_step.Result
    copy_ms: copy_step.Result
    flag_antennas: flag_step.Result
    apply_calibration: apply_step.Result
    peel: dict[str, Any] | None = Field(None, description="what peeling did, if it ran")
    resumed: bool = Field(False, description="True when an earlier run had finished this MS: its recorded "
                                             "result is returned and nothing is redone")


def _flag_options(options: dict) -> dict:
    return {k: options[k] for k in flag_step.Options.model_fields if k != "ms"}


def prepare_ms(src_ms: str, nvme_work_dir: str, bp_table: str, xy_table: str, peel_sky: bool = False,
               peel_rfi: bool = False, sky_model: str | None = None, rfi_model: str | None = None,
               **options) -> Result:
    """Copy one MS to NVMe, flag it, calibrate it and optionally peel it; returns every sub-step's result.

    Each sub-step appends its own timer to ``<nvme_work_dir>/timings.jsonl``.
    """
    all_options = Options(src_ms=src_ms, nvme_work_dir=nvme_work_dir, bp_table=bp_table, xy_table=xy_table,
                          peel_sky=peel_sky, peel_rfi=peel_rfi, sky_model=sky_model, rfi_model=rfi_model,
                          **options).model_dump()
    ms_name = copy_step.nvme_name(src_ms)
    done = _finished_before(nvme_work_dir, ms_name, all_options)
    if done is not None:
        return done
    step = ["prepare-ms"]
    try:
        return _prepare(all_options, step)
    except Exception as exc:
        error = as_orca_error(exc, src_ms)
        write_json(phase1_failure_record(nvme_work_dir, ms_name),
                          {"src_ms": src_ms, "step": step[0], "reason": str(error), "error": type(error).__name__})
        raise


def _finished_before(nvme_work_dir: str, ms_name: str, options: dict) -> Result | None:
    """The recorded result of an earlier run with the same options, if it still holds (see module doc)."""
    marker = phase1_marker(nvme_work_dir, ms_name)
    try:
        record = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    if record.get("options") != json.loads(json.dumps(options)):
        return None
    if not (Path(nvme_work_dir) / ms_name).is_dir() and not unit_archived(nvme_work_dir):
        return None
    log(_logger, "phase 1 of this MS finished before: skipped", ms=ms_name, record=str(marker))
    return Result.model_validate(record).model_copy(update={"resumed": True})


def _stage_refs(state: dict, o: dict) -> None:
    refs = [o["bp_table"], o["xy_table"]] + [o[m] for m, on in (("sky_model", "peel_sky"), ("rfi_model", "peel_rfi"))
                                            if o[on]]
    state["stage_refs"] = stage_step.stage_refs(o["nvme_work_dir"], refs)
    state["local"] = dict(zip(refs, state["stage_refs"].staged))


def _copy(state: dict, o: dict) -> None:
    state["copy_ms"] = copy_step.copy_ms(o["src_ms"], o["nvme_work_dir"])
    state["ms"] = state["copy_ms"].ms_path


def _flag_antennas(state: dict, o: dict) -> None:
    state["flag_antennas"] = flag_step.flag_antennas(state["ms"], **_flag_options(o))


def _apply_calibration(state: dict, o: dict) -> None:
    local = state["local"]
    state["apply_calibration"] = apply_step.apply_calibration(
        state["ms"], local[o["bp_table"]], local[o["xy_table"]], max_usable_freq_hz=o["max_usable_freq_hz"],
        spw_tolerance_hz=o["spw_tolerance_hz"], subband=o["subband"])


def _peel(state: dict, o: dict) -> None:
    ms, local = state["ms"], state["local"]
    outcome = peel_step.peel_ms(
        ms, sky_model=local.get(o["sky_model"]) if o["peel_sky"] else None,
        rfi_model=local.get(o["rfi_model"]) if o["peel_rfi"] else None, peel_sky=o["peel_sky"],
        peel_rfi=o["peel_rfi"], maxiter=o["peel_maxiter"], tolerance=o["tolerance"], minuvw=o["minuvw"],
        peeliter=o["peeliter"], save_solutions=peel_step.solutions_path(ms) if o["save_peel_solutions"] else None)
    state["peel"] = outcome.model_dump()


# pipeline.PHASE1's sub-steps: each reads and extends ``state`` (the staged refs, the MS on NVMe, results).
SUB_STEPS = {"stage-refs": _stage_refs, "copy": _copy, "flag-antennas": _flag_antennas,
             "apply-calibration": _apply_calibration, "peel": _peel}


def _prepare(all_options: dict, step: list[str]) -> Result:
    """The sub-steps of ``pipeline.PHASE1`` in order; ``step[0]`` names the one running, for the failure record."""
    o = Options.model_validate(all_options)
    if o.peel_sky and not o.sky_model:
        raise InputError("peel_sky is set but no sky_model was given")
    if o.peel_rfi and not o.rfi_model:
        raise InputError("peel_rfi is set but no rfi_model was given")
    work = o.nvme_work_dir
    state: dict = {"peel": None}
    for sub in PHASE1:
        if sub.enabled(o):
            step[0] = sub.name
            with step_timer(sub.name, work):
                SUB_STEPS[sub.name](state, all_options)
    ms = state["ms"]
    result = Result(ms_path=ms, **{k: state[k] for k in ("stage_refs", "copy_ms", "flag_antennas",
                                                          "apply_calibration", "peel")})
    phase1_failure_record(work, Path(ms).name).unlink(missing_ok=True)
    write_json(phase1_marker(work, Path(ms).name), {**result.model_dump(mode="json"), "options": all_options})
    return result


def run(options: Options) -> Result:
    with step_timer("prepare-ms", options.nvme_work_dir, ms=Path(options.src_ms).name):
        return prepare_ms(**options.model_dump())

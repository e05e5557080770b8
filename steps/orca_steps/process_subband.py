"""Step ``process-subband``: Phase 2 of one subband-hour (orca's ``process_subband_task``), resumable.

Runs ``pipeline.PHASE2`` in order, each enabled step through its own module: in this one process (for
people without Argo), or one pod per step in the Argo template ``subband-process``, whose pods call the
same three functions: ``start`` (preflight), ``run_step`` (each step) and ``write_partial`` (after a
failure). After a step succeeds, ``<work_dir>/.done/<step>.json`` records its options and result; a
later run skips a step whose marker holds the same options (resume after a crash or a lost pod) and
reuses its result. A step that runs again invalidates the markers of every later step, whose inputs may
have changed. Returns the archive path.
"""
from __future__ import annotations

import importlib
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, Field

from . import config
from .archive import check_destination, remove_stale_partials
from .errors import InputError
from .fileio import write_json
from .logs import get_logger, log, step_timer
from .pipeline import PHASE2, PipelineStep, UnitParameters, switch_values
from .movies import MIN_FRAMES
from .products import PARTIAL_MARKER
from .provenance import DONE_DIR, step_records
from .registry import STEPS
from .tools import require_tool

_logger = get_logger("process-subband")


class Options(UnitParameters):
    """The unit's parameters (orca's ``process_subband_task`` arguments, plus ours)."""


class StepRun(BaseModel):
    step: str
    status: str = Field(description="ran, skipped (done before) or disabled (switched off)")
    seconds: float = 0.0


class Result(BaseModel):
    archive_path: str
    steps: list[StepRun]


# In the work dir: the unit's validated parameters (written by preflight, read by every step pod) and
# the step that failed and why (read by the partial archive).
UNIT_FILE = ".phase2_unit.json"  # hidden: never archived
FAILED_FILE = ".phase2_failed.json"
STEP_NAMES = tuple(s.name for s in PHASE2)


def _module(name: str):
    return importlib.import_module(f"orca_steps.{STEPS[name][0]}")


def step_options(step: PipelineStep, params: UnitParameters, results: dict[str, dict]) -> BaseModel:
    """The step's Options: same-named unit parameters, then its declared inputs."""
    model = _module(step.name).Options
    values = {k: v for k, v in params.model_dump().items() if k in model.model_fields and v is not None}
    for option, source in step.inputs.items():
        if "." in source:
            producer, fieldname = source.split(".", 1)
            if producer not in results:
                raise InputError(f"step {step.name} needs {source}, but {producer} has not run")
            values[option] = results[producer][fieldname]
        else:
            values[option] = getattr(params, source)
    return model(**values)


def _marker(work_dir: Path, name: str) -> Path:
    return work_dir / DONE_DIR / f"{name}.json"


def _load_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_marker(path: Path, options: BaseModel, result: BaseModel) -> None:
    if not path.parent.parent.is_dir():  # cleanup_nvme removed the work dir: nothing left to resume
        return
    path.parent.mkdir(exist_ok=True)
    write_json(path, {"options": options.model_dump(mode="json"), "result": result.model_dump(mode="json"),
                      "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")})


def preflight(params: UnitParameters) -> None:
    """Fail before any work (Phase 2 runs for hours) on what would fail later: labels, files, tools, an
    archive that would be refused. Partial archives a killed run left are removed here, at the start."""
    if not Path(params.work_dir).is_dir():
        raise InputError(f"{params.work_dir}: work dir does not exist (Phase 1 writes it)")
    if params.strategy and not Path(params.strategy).is_file():
        raise InputError(f"{params.strategy}: AOFlagger strategy file does not exist")
    if not Path(params.beam).is_file():
        raise InputError(f"{params.beam}: beam model file does not exist")
    if not params.skip_science:
        science = [(params.vlssr_catalog, "VLSSr catalogue for dewarp")]
        science += [(t, "target list") for t in params.targets or []]
        science += [(params.catalog, "transient-search catalogue")] if params.catalog else []
        for path, what in science:
            if not Path(path).is_file():
                raise InputError(f"{path}: {what} does not exist (or set skip_science)")
    if params.cube and params.cube_dewarp:
        if not Path(params.vlssr_catalog).is_file():
            raise InputError(f"{params.vlssr_catalog}: VLSSr catalogue for cube_dewarp does not exist")
    tools = ["aoflagger", "wsclean"] + (["fpack"] if params.compress_snapshots or params.clean_snapshots else [])
    if len(params.ms_paths) >= MIN_FRAMES:  # one snapshot per MS: enough for movies
        tools.append("ffmpeg")
    for tool in tools:
        require_tool(tool)
    dest = config.archive_dir(params.archive_root or config.site().archive_root, params.lst_label,
                              params.obs_date, params.run_label, params.subband)
    remove_stale_partials(dest)
    archive_marker = _load_marker(_marker(Path(params.work_dir), "archive"))
    if not (archive_marker and archive_marker.get("result", {}).get("archive_path") == dest):
        check_destination(params.work_dir, dest, params.overwrite)


def start(params: UnitParameters) -> dict[str, bool]:
    """Preflight, then record the unit's parameters for the step pods; returns every switch's value."""
    preflight(params)
    work_dir = Path(params.work_dir)
    for stale in (PARTIAL_MARKER, FAILED_FILE):  # this run is complete until a step fails
        (work_dir / stale).unlink(missing_ok=True)
    write_json(work_dir / UNIT_FILE, params.model_dump(mode="json"))
    return switch_values(params, PHASE2)


def load_unit(unit_file: str | Path) -> UnitParameters:
    """The parameters preflight recorded (modes and site defaults already applied)."""
    try:
        return UnitParameters.model_validate_json(Path(unit_file).read_text())
    except OSError as exc:
        raise InputError(f"{unit_file}: unit parameters not found (the preflight step writes them)") from exc


def run_step(step: PipelineStep, params: UnitParameters, results: dict[str, dict]) -> tuple[StepRun, BaseModel]:
    """Run one enabled step, or reuse its marker's result when its options are unchanged.

    ``results`` holds the results of the steps its inputs name and receives this step's. A failure is
    recorded in FAILED_FILE (for the partial archive) and raised again."""
    work_dir = Path(params.work_dir)
    options = step_options(step, params, results)
    done = _load_marker(_marker(work_dir, step.name))
    if done is not None and done.get("options") == options.model_dump(mode="json"):
        results[step.name] = done["result"]
        log(_logger, "step already done", step=step.name)
        return StepRun(step=step.name, status="skipped"), _module(step.name).Result.model_validate(done["result"])
    for later in PHASE2[STEP_NAMES.index(step.name):]:  # from here on every later step runs again
        _marker(work_dir, later.name).unlink(missing_ok=True)
    (work_dir / FAILED_FILE).unlink(missing_ok=True)
    started = datetime.now(timezone.utc).timestamp()
    try:
        result = _module(step.name).run(options)
    except Exception as exc:
        if work_dir.is_dir():
            write_json(work_dir / FAILED_FILE, {"step": step.name, "error": f"{type(exc).__name__}: {exc}"})
        raise
    results[step.name] = result.model_dump(mode="json")
    _write_marker(_marker(work_dir, step.name), options, result)
    seconds = round(datetime.now(timezone.utc).timestamp() - started, 3)
    return StepRun(step=step.name, status="ran", seconds=seconds), result


def write_partial(params: UnitParameters) -> Path | None:
    """orca's best-effort partial archive after a failed step: marker, QA page, then the copy. Never raises.

    What ran and what failed are read from the work dir (done-markers, FAILED_FILE), so the one-process
    run and the Argo failure hook write the same partial archive."""
    from .archive import partial_archive

    work_dir = Path(params.work_dir)
    if not work_dir.is_dir():
        return None
    results = {name: record["result"] for name, record in step_records(work_dir).items() if name in STEP_NAMES}
    failure = _load_marker(work_dir / FAILED_FILE)
    if failure is None:  # the pod was killed (memory, deadline, lost node) before it could say why
        failed = next((s.name for s in PHASE2 if s.enabled(params) and s.name not in results), "unknown")
        failure = {"step": failed, "error": "did not finish (its pod was killed or lost)"}
    reason = f"step {failure['step']} failed: {failure['error']}"
    marker = {"failed_step": failure["step"], "error": reason, "steps_done": list(results),
              "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(work_dir / PARTIAL_MARKER, marker)
    page = PHASE2[STEP_NAMES.index("qa-summary")]
    try:
        _module(page.name).run(step_options(page, params, results))
    except Exception as page_exc:  # best effort: the archive matters more than its page
        log(_logger, "no QA page for the partial archive", error=str(page_exc))
    dest = config.archive_dir(params.archive_root or config.site().archive_root, params.lst_label,
                              params.obs_date, params.run_label, params.subband)
    return partial_archive(work_dir, dest, reason)


StepRunner = Callable[[PipelineStep, UnitParameters, dict], tuple[StepRun, BaseModel]]


def process_subband(params: UnitParameters, execute: StepRunner = run_step) -> Result:
    """Run every enabled Phase 2 step not already done with the same options; return the archive path.

    A failing step leaves a partial archive (``write_partial``) and its error is raised again."""
    start(params)
    results: dict[str, dict] = {}
    runs: list[StepRun] = []
    try:
        for step in PHASE2:
            if step.enabled(params):
                runs.append(execute(step, params, results)[0])
            else:
                runs.append(StepRun(step=step.name, status="disabled"))
    except Exception:
        write_partial(params)
        raise
    if "archive" not in results:
        raise InputError("the pipeline description has no archive step")
    return Result(archive_path=results["archive"]["archive_path"], steps=runs)



def run(options: Options) -> Result:
    params = UnitParameters(**options.model_dump())
    work_dir = params.work_dir if Path(params.work_dir).is_dir() else None
    with step_timer("process-subband", work_dir, subband=params.subband, lst=params.lst_label):
        return process_subband(params)

"""Step ``process-subband``: Phase 2 of one subband-hour (orca's ``process_subband_task``), resumable.

Runs ``pipeline.PHASE2`` in order, each enabled step through its own module. After a step succeeds,
``<work_dir>/.done/<step>.json`` records its options and result; a later run skips a step whose marker
holds the same options (resume after a crash or a lost pod) and reuses its result. A step that runs
again invalidates the markers of every later step, whose inputs may have changed. Returns the archive
path.
"""
from __future__ import annotations

import importlib
import json
from datetime import datetime, timezone
from pathlib import Path

from pydantic import BaseModel, Field

from . import config
from .archive import check_destination, remove_stale_partials
from .errors import InputError
from .fileio import write_json
from .logs import get_logger, log, step_timer
from .pipeline import PHASE2, Phase2Step, UnitParameters
from .movies import MIN_FRAMES
from .products import PARTIAL_MARKER
from .provenance import DONE_DIR
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


def _module(name: str):
    return importlib.import_module(f"orca_steps.{STEPS[name][0]}")


def step_options(step: Phase2Step, params: UnitParameters, results: dict[str, dict]) -> BaseModel:
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
    record = {"options": options.model_dump(mode="json"), "result": result.model_dump(mode="json"),
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(path, record)


def preflight(params: UnitParameters) -> None:
    """Fail before any work (Phase 2 runs for hours) on what would fail later: labels, files, tools, an
    archive that would be refused. Partial archives a killed run left are removed here, at the start."""
    if not Path(params.work_dir).is_dir():
        raise InputError(f"{params.work_dir}: work dir does not exist (Phase 1 writes it)")
    if params.strategy and not Path(params.strategy).is_file():
        raise InputError(f"{params.strategy}: AOFlagger strategy file does not exist")
    beam = params.beam or config.site().beam_model
    if not Path(beam).is_file():
        raise InputError(f"{beam}: beam model file does not exist")
    if not params.skip_science:
        science = [(params.vlssr_catalog or config.site().vlssr_catalog, "VLSSr catalogue for dewarp")]
        science += [(t, "target list") for t in params.targets or []]
        science += [(params.catalog, "transient-search catalogue")] if params.catalog else []
        for path, what in science:
            if not Path(path).is_file():
                raise InputError(f"{path}: {what} does not exist (or set skip_science)")
    if params.cube and params.cube_dewarp:
        catalogue = params.vlssr_catalog or config.site().vlssr_catalog
        if not Path(catalogue).is_file():
            raise InputError(f"{catalogue}: VLSSr catalogue for cube_dewarp does not exist")
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


def write_partial(params: UnitParameters, failed: str, exc: BaseException, results: dict[str, dict]) -> Path | None:
    """orca's best-effort partial archive after a failed step: marker, QA page, then the copy. Never raises."""
    from .archive import partial_archive

    work_dir = Path(params.work_dir)
    if not work_dir.is_dir():
        return None
    reason = f"step {failed} failed: {type(exc).__name__}: {exc}"
    marker = {"failed_step": failed, "error": reason, "steps_done": list(results),
              "written": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    write_json(work_dir / PARTIAL_MARKER, marker)
    page = next(s for s in PHASE2 if s.name == "qa-summary")
    try:
        _module(page.name).run(step_options(page, params, results))
    except Exception as page_exc:  # best effort: the archive matters more than its page
        log(_logger, "no QA page for the partial archive", error=str(page_exc))
    root = params.archive_root or config.site().archive_root
    dest = config.archive_dir(root, params.lst_label, params.obs_date, params.run_label, params.subband)
    return partial_archive(work_dir, dest, reason)


def process_subband(params: UnitParameters) -> Result:
    """Run every enabled Phase 2 step not already done with the same options; return the archive path.

    A failing step leaves a partial archive (``write_partial``) and its error is raised again."""
    preflight(params)
    work_dir = Path(params.work_dir)
    (work_dir / PARTIAL_MARKER).unlink(missing_ok=True)  # this run is complete until a step fails
    results: dict[str, dict] = {}
    try:
        runs = _run_steps(params, work_dir, results)
    except Exception as exc:
        failed = next((s.name for s in PHASE2 if s.enabled(params) and s.name not in results), "unknown")
        write_partial(params, failed, exc, results)
        raise
    if "archive" not in results:
        raise InputError("the pipeline description has no archive step")
    return Result(archive_path=results["archive"]["archive_path"], steps=runs)


def _run_steps(params: UnitParameters, work_dir: Path, results: dict[str, dict]) -> list[StepRun]:
    runs: list[StepRun] = []
    ran_one = False
    for index, step in enumerate(PHASE2):
        if not step.enabled(params):
            runs.append(StepRun(step=step.name, status="disabled"))
            continue
        options = step_options(step, params, results)
        marker = _marker(work_dir, step.name)
        done = None if ran_one else _load_marker(marker)
        if done is not None and done.get("options") == options.model_dump(mode="json"):
            results[step.name] = done["result"]
            runs.append(StepRun(step=step.name, status="skipped"))
            log(_logger, "step already done", step=step.name)
            continue
        if not ran_one:  # from here on every later step runs again
            for later in PHASE2[index:]:
                _marker(work_dir, later.name).unlink(missing_ok=True)
            ran_one = True
        started = datetime.now(timezone.utc).timestamp()
        result = _module(step.name).run(options)
        results[step.name] = result.model_dump(mode="json")
        _write_marker(marker, options, result)
        runs.append(StepRun(step=step.name, status="ran",
                            seconds=round(datetime.now(timezone.utc).timestamp() - started, 3)))
    return runs


def run(options: Options) -> Result:
    params = UnitParameters(**options.model_dump())
    work_dir = params.work_dir if Path(params.work_dir).is_dir() else None
    with step_timer("process-subband", work_dir, subband=params.subband, lst=params.lst_label):
        return process_subband(params)

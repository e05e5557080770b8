"""The local "controller": loaded objects, shared locks, every workflow of a run, and the run record."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Callable

from .engine import WorkflowRun
from .errors import LocalRunError
from .locks import LockManager
from .spec import ObjectStore, int_value, load_documents, workflow_from_cron, workflow_from_template


def parse_volume_roots(pairs: list[str]) -> dict[str, Path]:
    """``/fast=out/demo/fast`` -> {'/fast': Path('out/demo/fast').resolve()}."""
    roots = {}
    for pair in pairs:
        if "=" not in pair:
            raise LocalRunError(f"--volume-root {pair!r}: expected HOST_PATH=LOCAL_DIR")
        host, local = pair.split("=", 1)
        if not host.startswith("/"):
            raise LocalRunError(f"--volume-root {pair!r}: the host path must be absolute")
        roots[host.rstrip("/") or "/"] = Path(local).resolve()
    return roots


class LocalRunner:
    def __init__(self, template_paths: list[str | Path], out_dir: str | Path,
                 volume_roots: dict[str, Path] | None = None, namespace: str = "default",
                 semaphore_limits: dict[str, int] | None = None, pass_env: tuple[str, ...] = ()):
        self.store = ObjectStore(load_documents(template_paths))
        self.out_dir = Path(out_dir).resolve()
        self.log_dir = self.out_dir / "pods"
        self._scratch_root: Path | None = None
        self.record_path = self.out_dir / "run.json"
        self.volume_roots = volume_roots or {}
        self.namespace = namespace
        self.semaphore_limits = semaphore_limits or {}
        self.pass_env = tuple(pass_env)
        self.locks = LockManager(self._semaphore_limit, namespace)
        self.cond = self.locks.cond
        self.workflows: dict[str, WorkflowRun] = {}
        self.roots: list[WorkflowRun] = []
        self.fatal: BaseException | None = None
        self.version = 0
        self.started_at = time.time()

    # --- Configuration lookups ---------------------------------------------------------------------------
    def _semaphore_limit(self, config_map: str, key: str) -> int:
        if f"{config_map}/{key}" in self.semaphore_limits:
            return self.semaphore_limits[f"{config_map}/{key}"]
        return int_value(self.store.config_map_value(config_map, key), f"ConfigMap {config_map} key {key}")

    def host_path(self, path: str, where: str) -> Path:
        """The local folder standing for a node's hostPath, from the longest matching --volume-root."""
        best = None
        for host in self.volume_roots:
            if path == host or path.startswith(host.rstrip("/") + "/") or host == "/":
                if best is None or len(host) > len(best):
                    best = host
        if best is None:
            raise LocalRunError(f"{where}: hostPath {path} has no local folder: pass --volume-root {path.split('/')[1] and '/' + path.split('/')[1]}=DIR")
        rest = path[len(best):].lstrip("/")
        return self.volume_roots[best] / rest if rest else self.volume_roots[best]

    @property
    def scratch_root(self) -> Path:
        """Short-lived pod folders (emptyDir, /tmp), in a short path under the system's temp dir."""
        with self.cond:
            if self._scratch_root is None:
                self._scratch_root = Path(tempfile.mkdtemp(prefix="orca-run-"))
            return self._scratch_root

    def _drop_scratch_root(self) -> None:
        if self._scratch_root is not None:
            shutil.rmtree(self._scratch_root, ignore_errors=True)

    # --- Workflows ---------------------------------------------------------------------------------------
    def changed(self) -> None:
        with self.cond:
            self.version += 1
            self.cond.notify_all()

    def guard(self, fn: Callable, *args) -> Callable[[], None]:
        """Wrap a thread body: an unexpected exception stops the whole run and is re-raised by wait()."""
        def run():
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread by wait()
                with self.cond:
                    if self.fatal is None:
                        self.fatal = exc
                        exc.thread_traceback = traceback.format_exc()
                    for wf in self.workflows.values():
                        wf.terminate()
                    self.changed()
        return run

    def create_workflow(self, manifest: dict, parent: WorkflowRun | None = None,
                        created_by: str | None = None) -> WorkflowRun:
        wf = WorkflowRun(self, manifest, parent, created_by)
        with self.cond:
            while wf.name in self.workflows:
                wf = WorkflowRun(self, manifest, parent, created_by)
            self.workflows[wf.name] = wf
            if parent is None:
                self.roots.append(wf)
            self.changed()
        wf.start()
        return wf

    def submit(self, target: str, parameters: dict[str, str] | None = None,
               generate_name: str | None = None) -> WorkflowRun:
        """Like ``argo submit``: TARGET is a Workflow/CronWorkflow YAML file, ``workflowtemplate/NAME``,
        ``cronworkflow/NAME`` or a plain WorkflowTemplate name."""
        parameters = parameters or {}
        kind, _, name = target.partition("/") if "/" in target and not Path(target).exists() else ("", "", target)
        if Path(target).is_file():
            docs = [d for d in load_documents([target]) if d["kind"] in ("Workflow", "CronWorkflow")]
            if len(docs) != 1:
                raise LocalRunError(f"{target}: expected exactly one Workflow or CronWorkflow")
            if docs[0]["kind"] == "CronWorkflow":
                self.store.add(docs[0])
                manifest = workflow_from_cron(docs[0])
            else:
                manifest = docs[0]
            args = manifest.setdefault("spec", {}).setdefault("arguments", {}).setdefault("parameters", [])
            for k, v in parameters.items():
                args[:] = [a for a in args if a["name"] != k] + [{"name": k, "value": v}]
        elif kind.lower() in ("cronworkflow", "cwf", "cron"):
            manifest = workflow_from_cron(self.store.get("CronWorkflow", name))
            args = manifest["spec"].setdefault("arguments", {}).setdefault("parameters", [])
            for k, v in parameters.items():
                args[:] = [a for a in args if a["name"] != k] + [{"name": k, "value": v}]
        elif kind.lower() in ("", "workflowtemplate", "wftmpl"):
            self.store.get("WorkflowTemplate", name)
            manifest = workflow_from_template(name, parameters, generate_name)
        else:
            raise LocalRunError(f"cannot submit {target!r}: use a file, workflowtemplate/NAME or cronworkflow/NAME")
        if generate_name:
            manifest["metadata"].pop("name", None)
            manifest["metadata"]["generateName"] = generate_name
        return self.create_workflow(manifest)

    def all_done(self) -> bool:
        with self.cond:
            return all(wf.finished_at is not None for wf in self.workflows.values())

    def wait(self, on_tick: Callable[[], None] = lambda: None, tick: float = 1.0) -> None:
        """Block until every workflow (children included) has finished; write the record as it goes."""
        last_written, last_tick = -1, 0.0
        try:
            while True:
                with self.cond:
                    done = self.fatal is not None or all(wf.finished_at is not None for wf in self.workflows.values())
                    if not done:
                        self.cond.wait(0.25)
                    version = self.version
                if time.time() - last_tick >= tick or done:
                    on_tick()
                    last_tick = time.time()
                if version != last_written and (done or time.time() - self._record_time > 2.0):
                    self.write_record()
                    last_written = version
                if done:
                    break
        except BaseException:
            # Ctrl-C, a test timeout, ...: stop every pod before giving up, never leave them running.
            self.terminate()
            for wf in list(self.workflows.values()):
                if wf.thread:
                    wf.thread.join(timeout=15)
            self.write_record()
            self._drop_scratch_root()
            raise
        self._drop_scratch_root()
        if self.fatal is not None:
            for wf in list(self.workflows.values()):
                if wf.thread:
                    wf.thread.join(timeout=15)
            self.write_record()
            raise self.fatal
        self.write_record()

    def terminate(self) -> None:
        with self.cond:
            for wf in self.workflows.values():
                wf.terminate()
            self.changed()

    # --- The run record ----------------------------------------------------------------------------------
    _record_time = 0.0

    def record(self) -> dict:
        with self.cond:
            return {"runner": {"started_at": self.started_at, "out_dir": str(self.out_dir),
                               "volume_roots": {k: str(v) for k, v in self.volume_roots.items()},
                               "namespace": self.namespace,
                               "fatal": repr(self.fatal) if self.fatal else None},
                    "workflows": [wf.record() for wf in self.workflows.values()],
                    "locks": [{"lock": h.lock, "holder": h.holder, "acquired": h.acquired, "released": h.released}
                              for h in self.locks.holds]}

    def write_record(self) -> Path:
        self._record_time = time.time()
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.record_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.record(), indent=1, default=str))
        os.replace(tmp, self.record_path)
        return self.record_path

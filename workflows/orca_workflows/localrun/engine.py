"""One running workflow: its nodes and how each template type executes.

Each node runs in its own thread and blocks until it is done, so a DAG is a loop that starts every task
whose dependencies are fulfilled and waits for the next one to finish. Argo's rules are kept where they
change results: depends logic, branch phases of skipped tasks, loop aggregation, retry policies, locks
held across retries, exit handlers that see ``workflow.status``. Errors Argo reports on a node (an
unresolved reference, a bad ``withParam``) become an ``Error`` node; a field the runner does not implement
stops the whole run with :class:`Unsupported`.
"""
from __future__ import annotations

import copy
import json
import random
import string
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import yaml

from . import dag as dagrules
from . import govaluate
from .errors import ExpressionError, LocalRunError, Unsupported
from .jsonpath import jsonpath_get
from .locks import Slots
from .nodes import Node, failures, fnv32, iso, loop_variables, node_variables
from .pods import Mount, PathMap, base_environment, run_process
from .spec import duration_seconds, int_value, param_string, resolve_workflow
from .templating import expression_env, substitute, substitute_tree
from . import exprlang

if TYPE_CHECKING:
    from .runner import LocalRunner

STEP_EXCEEDED = "Pod was active on the node longer than the specified deadline"


class NodeError(Exception):
    """Ends a node with phase Error and this message (what Argo would report on the node)."""


@dataclass
class Ctx:
    """Where a node runs: the template scope (a WorkflowTemplate name or None), its boundary, and
    the cancel flag that applies to it (the exit handler has its own)."""
    tscope: str | None
    boundary: str | None
    cancel: threading.Event
    extra: dict = field(default_factory=dict)
    slots: Slots | None = None


class SlotToken:
    """A parallelism slot of the enclosing DAG/steps, taken before a child starts, given back between retries."""

    def __init__(self, slots: Slots | None, holder: str):
        self.slots, self.holder, self.held = slots, holder, False

    def take(self, cancelled: Callable[[], bool]) -> bool:
        if self.slots is None or self.held:
            return True
        self.held = self.slots.acquire(self.holder, cancelled)
        return self.held

    def give_back(self) -> None:
        if self.held and self.slots is not None:
            self.slots.release(self.holder)
        self.held = False


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


class WorkflowRun:
    def __init__(self, runner: "LocalRunner", manifest: dict, parent: "WorkflowRun | None" = None,
                 created_by: str | None = None):
        self.runner = runner
        self.spec, meta, self.template_source = resolve_workflow(runner.store, manifest)
        self.name = meta.get("name") or f"{meta['generateName']}{_suffix()}"
        if len(self.name) > 63:
            raise LocalRunError(f"workflow name {self.name!r} is longer than 63 characters")
        self.namespace = meta.get("namespace") or runner.namespace
        self.labels = {str(k): param_string(v, "metadata.labels") for k, v in (meta.get("labels") or {}).items()}
        self.annotations = dict(meta.get("annotations") or {})
        self.owner_references = list(meta.get("ownerReferences") or [])
        self.parent, self.created_by = parent, created_by
        self.uid = str(uuid.uuid4())
        self.created_at = time.time()
        self.phase, self.message = "Pending", ""
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.nodes: dict[str, Node] = {}
        self.global_outputs: dict[str, str] = {}
        self.cancel = threading.Event()          # stops the main DAG (deadline, termination)
        self.exit_cancel = threading.Event()     # stops the exit handler too (termination only)
        self.slots = Slots(int_value(self.spec["parallelism"], "spec.parallelism")
                           if self.spec.get("parallelism") else None, runner.locks.cond)
        self.parameters = self._workflow_parameters()
        self.thread: threading.Thread | None = None
        self.log_dir = runner.log_dir / self.name
        self.deleted = False
        self.labels["workflows.argoproj.io/completed"] = "false"

    # --- Parameters and scope ----------------------------------------------------------------------
    def _workflow_parameters(self) -> dict[str, str]:
        params = {}
        for p in (self.spec.get("arguments") or {}).get("parameters") or []:
            where = f"workflow {self.name}: spec.arguments.parameters.{p['name']}"
            if "value" in p:
                value = param_string(p["value"], where)
            elif (p.get("valueFrom") or {}).get("configMapKeyRef"):
                ref = p["valueFrom"]["configMapKeyRef"]
                value = self.runner.store.config_map_value(ref["name"], ref["key"], bool(ref.get("optional")))
                if value is None:
                    value = param_string(p.get("default", ""), where)
            elif "default" in p:
                value = param_string(p["default"], where)
            else:
                raise LocalRunError(f"{where}: no value and no default (argo submit would refuse it)")
            if p.get("enum") and value not in [param_string(e, where) for e in p["enum"]]:
                raise LocalRunError(f"{where}: {value!r} is not one of its enum {p['enum']}")
            params[p["name"]] = value
        return params

    def global_scope(self) -> dict[str, str]:
        created = datetime.fromtimestamp(self.created_at, tz=timezone.utc)
        scope = {"workflow.name": self.name, "workflow.namespace": self.namespace, "workflow.uid": self.uid,
                 "workflow.serviceAccountName": self.spec.get("serviceAccountName", "default"),
                 "workflow.mainEntrypoint": self.spec["entrypoint"],
                 "workflow.creationTimestamp": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 "workflow.parameters.json": exprlang.to_json([{"name": k, "value": v} for k, v in self.parameters.items()])}
        for ch in "YmdHMSjyIpbBaAeUwZ":
            scope[f"workflow.creationTimestamp.{ch}"] = created.strftime(f"%{ch}")
        scope.update({f"workflow.parameters.{k}": v for k, v in self.parameters.items()})
        scope.update({f"workflow.labels.{k}": v for k, v in self.labels.items()})
        scope.update({f"workflow.annotations.{k}": str(v) for k, v in self.annotations.items()})
        scope.update({f"workflow.outputs.parameters.{k}": v for k, v in self.global_outputs.items()})
        return scope

    # --- Node bookkeeping ---------------------------------------------------------------------------
    def add_node(self, name: str, display: str, ntype: str, template: str | None, ctx: Ctx,
                 parent: Node | None, phase: str = "Pending", message: str = "") -> Node:
        node = Node(id=f"{self.name}-{fnv32(name)}", name=name, display_name=display, type=ntype,
                    workflow=self.name, template=template, phase=phase, boundary_id=ctx.boundary, message=message)
        with self.runner.cond:
            self.nodes[node.id] = node
            if parent is not None:
                parent.children.append(node.id)
            if phase in ("Skipped", "Omitted", "Error"):
                node.started_at = node.finished_at = time.time()
            self.runner.changed()
        return node

    def set_phase(self, node: Node, phase: str, message: str | None = None) -> None:
        with self.runner.cond:
            if phase == "Running" and node.started_at is None:
                node.started_at = time.time()
            if phase in ("Succeeded", "Failed", "Error", "Skipped", "Omitted"):
                if node.started_at is None:
                    node.started_at = time.time()
                if node.finished_at is None:
                    node.finished_at = time.time()
            node.phase = phase
            if message is not None:
                node.message = message
            self.runner.changed()

    # --- Running the workflow ---------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self.runner.guard(self.run), name=f"wf-{self.name}", daemon=True)
        self.thread.start()

    def run(self) -> None:
        with self.runner.cond:
            self.started_at = time.time()
            self.phase = "Running"
            self.runner.changed()
        holds = []
        sync = self.spec.get("synchronization")
        if sync:
            sync = substitute_tree(sync, self.global_scope(), "spec.synchronization")
            holds = self.runner.locks.acquire(sync, self.name, self.cancel.is_set)
        timer = None
        if self.spec.get("activeDeadlineSeconds") is not None:
            limit = duration_seconds(self.spec["activeDeadlineSeconds"], "spec.activeDeadlineSeconds")
            timer = threading.Timer(limit, self._deadline_exceeded)
            timer.daemon = True
            timer.start()
        ctx = Ctx(self.template_source, None, self.cancel, slots=None)
        entry_args = [{"name": k, "value": v} for k, v in self.parameters.items()]
        if holds is None:
            root = self.add_node(self.name, self.name, "Steps", self.spec["entrypoint"], ctx, None, "Failed",
                                 "Stopped while waiting for the workflow lock")
        else:
            root = self.execute(self.name, self.name, {"template": self.spec["entrypoint"]}, entry_args, ctx, None, None)
        if timer:
            timer.cancel()
        status, message = root.phase, root.message
        if self.deadline_hit:
            status, message = "Failed", "Max duration limit exceeded"
        exit_ref = self.spec.get("onExit") or ((self.spec.get("hooks") or {}).get("exit") or {}).get("template")
        if exit_ref:
            exit_args = ((self.spec.get("hooks") or {}).get("exit") or {}).get("arguments", {}).get("parameters")
            exit_ctx = Ctx(self.template_source, None, self.exit_cancel, extra={
                "workflow.status": status, "workflow.failures": failures(list(self.nodes.values())),
                "workflow.duration": str(round(time.time() - (self.started_at or time.time()), 3))})
            params = exit_args if exit_args is not None else entry_args
            params = [{"name": p["name"], "value": substitute(param_string(p.get("value", ""), "hooks.exit"),
                                                              {**self.global_scope(), **exit_ctx.extra})}
                      for p in params]
            exit_node = self.execute(f"{self.name}.onExit", f"{self.name}.onExit", {"template": exit_ref}, params,
                                     exit_ctx, None, None)
            if exit_node.failed_or_error and status == "Succeeded":
                status, message = "Failed", f"exit handler failed: {exit_node.message}"
        if holds:
            self.runner.locks.release(holds)
        with self.runner.cond:
            self.phase, self.message = status, message
            if self.deleted:
                self.message = f"deleted while {status}: {message}".rstrip(": ")
            self.finished_at = time.time()
            self.labels["workflows.argoproj.io/completed"] = "true"
            self.runner.changed()

    deadline_hit = False

    def _deadline_exceeded(self) -> None:
        self.deadline_hit = True
        self.cancel.set()

    def terminate(self) -> None:
        self.cancel.set()
        self.exit_cancel.set()

    # --- Templates ------------------------------------------------------------------------------------
    def lookup(self, holder: dict, tscope: str | None, where: str) -> tuple[dict, str | None]:
        if holder.get("templateRef"):
            ref = holder["templateRef"]
            source = self.runner.store.get("WorkflowTemplate", ref["name"])
            scope_name = ref["name"]
            name = ref["template"]
            templates = source["spec"].get("templates") or []
        else:
            name = holder.get("template")
            if not name:
                raise LocalRunError(f"{where}: neither template nor templateRef")
            scope_name = tscope
            templates = (self.spec.get("templates") if tscope in (None, self.template_source)
                         else self.runner.store.get("WorkflowTemplate", tscope)["spec"].get("templates")) or []
        for t in templates:
            if t["name"] == name:
                return t, scope_name
        raise LocalRunError(f"{where}: template {name!r} not found in {scope_name or 'the workflow'}")

    def resolve_inputs(self, tmpl: dict, args: list[dict], where: str) -> dict[str, str]:
        given = {a["name"]: a for a in args}
        values = {}
        for p in (tmpl.get("inputs") or {}).get("parameters") or []:
            name = p["name"]
            arg = given.get(name)
            if arg is not None and "value" in arg:
                value = param_string(arg["value"], f"{where}: argument {name}")
            elif arg is not None and (arg.get("valueFrom") or {}).get("configMapKeyRef"):
                ref = arg["valueFrom"]["configMapKeyRef"]
                value = self.runner.store.config_map_value(ref["name"], ref["key"], bool(ref.get("optional")))
            elif "value" in p:
                value = substitute(param_string(p["value"], where), self.global_scope(), f"{where}.inputs.{name}")
            elif (p.get("valueFrom") or {}).get("configMapKeyRef"):
                ref = p["valueFrom"]["configMapKeyRef"]
                value = self.runner.store.config_map_value(ref["name"], ref["key"], bool(ref.get("optional")))
            else:
                value = None
            if value is None and "default" in p:
                value = substitute(param_string(p["default"], where), self.global_scope(), f"{where}.inputs.{name}")
            if value is None:
                raise NodeError(f"inputs.parameters.{name} was not supplied")
            if p.get("enum") and value not in [param_string(e, where) for e in p["enum"]]:
                raise NodeError(f"inputs.parameters.{name}: {value!r} is not one of its enum {p['enum']}")
            values[name] = value
        return values

    def execute(self, name: str, display: str, holder: dict, args: list[dict], ctx: Ctx,
                parent: Node | None, token: SlotToken | None, loop_index: int | None = None) -> Node:
        """Run one template invocation to its end and return its node."""
        token = token or SlotToken(ctx.slots, name)
        try:
            tmpl, tscope = self.lookup(holder, ctx.tscope, name)
        except LocalRunError as exc:
            token.give_back()
            return self.add_node(name, display, "Skipped", holder.get("template"), ctx, parent, "Error", str(exc))
        tname = tmpl["name"]
        kind = "Pod" if ("container" in tmpl or "script" in tmpl or "resource" in tmpl) else \
            ("DAG" if "dag" in tmpl else ("Steps" if "steps" in tmpl else None))
        if kind is None:
            raise Unsupported(f"template {tname}", "only container, script, resource, dag and steps templates run locally")
        if kind != "Pod" and tmpl.get("activeDeadlineSeconds") is not None:
            raise Unsupported(f"template {tname}.activeDeadlineSeconds", "a deadline on a dag or steps template")
        retry = tmpl.get("retryStrategy")
        node = self.add_node(name, display, "Retry" if retry else kind, tname, ctx, parent)
        node.loop_index = loop_index
        try:
            inputs = self.resolve_inputs(tmpl, args, f"{self.name}/{tname}")
        except (NodeError, ExpressionError) as exc:
            token.give_back()
            self.set_phase(node, "Error", str(exc))
            return node
        node.inputs = {"parameters": [{"name": k, "value": v} for k, v in inputs.items()]}
        scope = {**self.global_scope(), **ctx.extra,
                 **{f"inputs.parameters.{k}": v for k, v in inputs.items()},
                 "inputs.parameters": exprlang.to_json(node.inputs["parameters"])}
        inner_ctx = Ctx(tscope, ctx.boundary, ctx.cancel, ctx.extra, ctx.slots)
        holds = []
        try:
            sync = tmpl.get("synchronization")
            if sync:
                sync = substitute_tree(sync, scope, f"{tname}.synchronization")
                self.set_phase(node, "Pending", "Waiting for lock")
                holds = self.runner.locks.acquire(sync, node.id, ctx.cancel.is_set)
                if holds is None:
                    self.set_phase(node, "Failed", "Stopped while waiting for a lock")
                    return node
                self.set_phase(node, "Pending", "")
            if retry:
                self._run_with_retries(node, tmpl, scope, inner_ctx, token, retry)
            else:
                self._run_once(node, tmpl, scope, inner_ctx, token, attempt=0)
        except (NodeError, ExpressionError) as exc:
            self.set_phase(node, "Error", str(exc))
        finally:
            token.give_back()
            if holds:
                self.runner.locks.release(holds)
        self._export_globals(node, tmpl)
        return node

    def _export_globals(self, node: Node, tmpl: dict) -> None:
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            value = node.output_parameter(p["name"]) if p.get("globalName") else None
            if value is not None:
                with self.runner.cond:
                    self.global_outputs[p["globalName"]] = value

    def _run_once(self, node: Node, tmpl: dict, scope: dict, ctx: Ctx, token: SlotToken, attempt: int) -> None:
        scope = {**scope, "retries": str(attempt), "node.name": node.name}
        if "dag" in tmpl:
            self._run_dag(node, tmpl, scope, ctx, token)
        elif "steps" in tmpl:
            self._run_steps(node, tmpl, scope, ctx, token)
        elif "resource" in tmpl:
            self._run_resource(node, tmpl, scope, ctx, token)
        else:
            self._run_pod(node, tmpl, scope, ctx, token)

    def _run_with_retries(self, node: Node, tmpl: dict, scope: dict, ctx: Ctx, token: SlotToken, retry: dict) -> None:
        where = f"{tmpl['name']}.retryStrategy"
        retry = substitute_tree(retry, scope, where)
        limit = int_value(retry["limit"], f"{where}.limit") if retry.get("limit") is not None else None
        policy = retry.get("retryPolicy", "OnFailure")
        if policy not in ("Always", "OnFailure", "OnError", "OnTransientError"):
            raise LocalRunError(f"{where}.retryPolicy: {policy!r} is not an Argo retry policy")
        backoff = retry.get("backoff") or {}
        base = duration_seconds(backoff["duration"], f"{where}.backoff.duration") if backoff.get("duration") else 0.0
        factor = float(backoff.get("factor", 1) or 1)
        cap = duration_seconds(backoff["cap"], f"{where}.backoff.cap") if backoff.get("cap") else None
        max_total = duration_seconds(backoff["maxDuration"], f"{where}.backoff.maxDuration") if backoff.get("maxDuration") else None
        kind = "DAG" if "dag" in tmpl else "Steps" if "steps" in tmpl else "Pod"
        self.set_phase(node, "Running")
        first_start = time.time()
        attempt, last = 0, None
        while True:
            child = self.add_node(f"{node.name}({attempt})", f"{node.display_name}({attempt})", kind,
                                  tmpl["name"], ctx, node)
            child.retried = True
            self._run_once(child, tmpl, scope, ctx, token, attempt)
            last = child
            token.give_back()
            if child.phase == "Succeeded":
                break
            retryable = {"Always": child.phase in ("Failed", "Error"), "OnFailure": child.phase == "Failed",
                         "OnError": child.phase == "Error", "OnTransientError": False}[policy]
            if retryable and retry.get("expression"):
                env = {"lastRetry": {"exitCode": (child.outputs or {}).get("exitCode", "-1"), "status": child.phase,
                                     "duration": str(int((child.finished_at or 0) - (child.started_at or 0))),
                                     "message": child.message}}
                retryable = exprlang.evaluate_bool(retry["expression"], env)
            if not retryable or (limit is not None and attempt >= limit) or ctx.cancel.is_set():
                break
            wait = base * factor ** attempt
            if cap is not None:
                wait = min(wait, cap)
            if max_total is not None and time.time() + wait - first_start > max_total:
                break
            self.set_phase(node, "Running", f"Backoff for {wait:g} seconds")
            if ctx.cancel.wait(wait):
                break
            attempt += 1
        node.outputs = last.outputs
        node.host, node.node_selector, node.pod_name = last.host, last.node_selector, last.pod_name
        node.labels, node.logs, node.mounts, node.child_workflow = last.labels, last.logs, last.mounts, last.child_workflow
        self.set_phase(node, last.phase, last.message)

    # --- DAG ------------------------------------------------------------------------------------------------
    def _run_dag(self, node: Node, tmpl: dict, scope: dict, ctx: Ctx, token: SlotToken) -> None:
        if not token.take(ctx.cancel.is_set):
            self.set_phase(node, "Failed", "Stopped")
            return
        self.set_phase(node, "Running")
        spec = tmpl["dag"]
        tasks = {t["name"]: t for t in spec["tasks"]}
        deps, logic = {}, {}
        for t in spec["tasks"]:
            deps[t["name"]], logic[t["name"]] = dagrules.depends_logic(t, tasks)
        targets = spec["target"].split() if spec.get("target") else dagrules.leaf_tasks(tasks, deps)
        slots = Slots(int_value(tmpl["parallelism"], f"{tmpl['name']}.parallelism")
                      if tmpl.get("parallelism") else None, self.runner.locks.cond)
        child_ctx = Ctx(ctx.tscope, node.id, ctx.cancel, ctx.extra, slots)
        finished: dict[str, Node] = {}
        groups: dict[str, list[Node]] = {}
        started: set[str] = set()

        def run_task(name: str) -> None:
            task = tasks[name]
            tscope = dict(scope)
            for a in dagrules.ancestors(name, deps):
                tscope.update(self._task_variables(f"tasks.{a}", finished[a], groups.get(a)))
            result_node = self._run_task(node, f"{node.name}.{name}", name, task, tscope, child_ctx, groups, "tasks")
            with self.runner.cond:
                finished[name] = result_node
                self.runner.changed()

        threads = []
        while True:
            with self.runner.cond:
                ready = [] if ctx.cancel.is_set() else \
                    [n for n in tasks if n not in started and all(d in finished for d in deps[n])]
                started.update(ready)
                if not ready and len(finished) == len(started):
                    break
                if not ready:
                    self.runner.cond.wait(0.5)
                    continue
            for name in ready:
                if logic[name] and not self._depends_allow(node, name, tasks, deps, logic, finished, groups, child_ctx):
                    continue
                th = threading.Thread(target=self.runner.guard(run_task, name), name=f"task-{name}", daemon=True)
                threads.append(th)
                th.start()
        for th in threads:
            th.join()
        token.give_back()
        if ctx.cancel.is_set():
            self.set_phase(node, "Failed", "Stopped")
            return
        phase = dagrules.dag_phase(targets, tasks, deps, finished, spec.get("failFast", True) is not False)
        if phase != "Succeeded":
            bad = [n for n in finished.values() if n.failed_or_error]
            self.set_phase(node, phase, f"child '{bad[0].name}' failed" if bad else "")
            return
        all_scope = dict(scope)
        for name, n in finished.items():
            all_scope.update(self._task_variables(f"tasks.{name}", n, groups.get(name)))
        self._template_outputs(node, tmpl, all_scope)
        self.set_phase(node, "Succeeded")

    def _depends_allow(self, node: Node, name: str, tasks: dict, deps: dict, logic: dict,
                       finished: dict[str, Node], groups: dict, ctx: Ctx) -> bool:
        """Evaluate a task's depends logic; record an Omitted (or Error) node when it must not run."""
        results = {d: dagrules.task_results(finished[d], groups.get(d, [])) for d in deps[name]}
        try:
            if dagrules.evaluate_depends(logic[name], results):
                return True
            phase, message = "Omitted", "omitted: depends condition not met"
        except ExpressionError as exc:
            phase, message = "Error", str(exc)
        skipped = self.add_node(f"{node.name}.{name}", name, "Skipped", tasks[name].get("template"), ctx, node,
                                phase, message)
        with self.runner.cond:
            finished[name] = skipped
            self.runner.changed()
        return False

    def _task_variables(self, prefix: str, node: Node, group: list[Node] | None) -> dict[str, str]:
        if node.type == "TaskGroup" or group is not None:
            return loop_variables(prefix, [c for c in (group or []) if not c.retried], node.phase)
        return node_variables(prefix, node)

    def _run_task(self, parent: Node, name: str, display: str, task: dict, scope: dict, ctx: Ctx,
                  groups: dict[str, list[Node]], kind: str) -> Node:
        """A DAG task or a step: expand loops, evaluate ``when``, run the template."""
        where = f"{self.name}/{name}"
        items = None
        try:
            if task.get("withParam") is not None:
                text = substitute(task["withParam"], scope, f"{where}.withParam")
                try:
                    items = json.loads(text)
                except json.JSONDecodeError:
                    items = None
                if not isinstance(items, list):
                    raise NodeError(f"withParam value could not be parsed as a JSON list: {text[:200]}")
            elif task.get("withItems") is not None:
                items = substitute_tree(task["withItems"], scope, f"{where}.withItems")
            elif task.get("withSequence") is not None:
                items = self._sequence(substitute_tree(task["withSequence"], scope, f"{where}.withSequence"), where)
        except (NodeError, ExpressionError) as exc:
            return self.add_node(name, display, "Skipped", task.get("template"), ctx, parent, "Error", str(exc))
        if items is None:
            return self._run_item(parent, name, display, task, scope, ctx, None, None, kind)
        group = self.add_node(name, display, "TaskGroup", task.get("template"), ctx, parent)
        groups[display] = []
        if not items:
            self.set_phase(group, "Skipped", "Skipped, empty params")
            return group
        self.set_phase(group, "Running")
        threads, results = [], []
        for i, item in enumerate(items):
            label = _item_label(item)
            child_name = f"{name}({i}:{label})"
            item_scope = {**scope, **_item_scope(item)}
            token = SlotToken(ctx.slots, child_name)
            if not token.take(ctx.cancel.is_set):
                break

            def run(i=i, child_name=child_name, item_scope=item_scope, token=token, label=label):
                child = self._run_item(group, child_name, f"{display}({i}:{label})", task, item_scope, ctx, token, i,
                                       kind)
                with self.runner.cond:
                    results.append(child)
                    groups[display].append(child)
                    self.runner.changed()

            th = threading.Thread(target=self.runner.guard(run), name=f"item-{child_name}", daemon=True)
            threads.append(th)
            th.start()
        for th in threads:
            th.join()
        bad = [c for c in sorted(results, key=lambda c: c.loop_index or 0) if c.failed_or_error]
        if ctx.cancel.is_set() and len(results) < len(items):
            self.set_phase(group, "Failed", "Stopped")
        else:
            self.set_phase(group, bad[-1].phase if bad else "Succeeded",
                           f"{len(bad)} of {len(items)} failed" if bad else "")
        return group

    def _run_item(self, parent: Node, name: str, display: str, task: dict, scope: dict, ctx: Ctx,
                  token: SlotToken | None, index: int | None, kind: str) -> Node:
        where = f"{self.name}/{name}"
        try:
            when = substitute(task["when"], scope, f"{where}.when") if task.get("when") else ""
            go = govaluate.evaluate_when(when)
            args = [{**a, "value": substitute(param_string(a["value"], where), scope, f"{where}.arguments.{a['name']}")}
                    if "value" in a else a for a in (task.get("arguments") or {}).get("parameters") or []]
        except (NodeError, ExpressionError) as exc:
            if token:
                token.give_back()
            node = self.add_node(name, display, "Skipped", task.get("template"), ctx, parent, "Error", str(exc))
            node.loop_index = index
            return node
        if not go:
            if token:
                token.give_back()
            node = self.add_node(name, display, "Skipped", task.get("template"), ctx, parent, "Skipped",
                                 f"when '{when}' evaluated false")
            node.loop_index = index
            return node
        holder = {k: task[k] for k in ("template", "templateRef") if k in task}
        node = self.execute(name, display, holder, args, ctx, parent, token, index)
        hook = (task.get("hooks") or {}).get("exit")
        if hook and node.completed:
            self._run_exit_hook(node, hook, {**scope, **node_variables(f"{kind}.{task['name']}", node)}, ctx)
        return node

    def _run_exit_hook(self, node: Node, hook: dict, scope: dict, ctx: Ctx) -> Node:
        """A task's exit hook: runs once the task completed, as a child of its node; its phase does not
        change the DAG's (as in Argo)."""
        where = f"{self.name}/{node.name}.onExit"
        args = [{"name": a["name"], "value": substitute(param_string(a.get("value", ""), where), scope,
                                                         f"{where}.arguments.{a['name']}")}
                for a in (hook.get("arguments") or {}).get("parameters") or []]
        holder = {k: hook[k] for k in ("template", "templateRef") if k in hook}
        return self.execute(f"{node.name}.onExit", f"{node.display_name}.onExit", holder, args, ctx, node, None)

    @staticmethod
    def _sequence(seq: dict, where: str) -> list[str]:
        start = int_value(seq.get("start", 0), f"{where}.withSequence.start")
        if seq.get("end") is not None:
            end = int_value(seq["end"], f"{where}.withSequence.end")
        elif seq.get("count") is not None:
            count = int_value(seq["count"], f"{where}.withSequence.count")
            if count == 0:
                return []
            end = start + count - 1
        else:
            raise NodeError("withSequence needs end or count")
        fmt = seq.get("format")
        if fmt and fmt not in ("%d",) and not fmt.startswith("%0"):
            raise Unsupported(f"{where}.withSequence.format", fmt)
        step = 1 if end >= start else -1
        return [(fmt % i) if fmt else str(i) for i in range(start, end + step, step)]

    # --- Steps -----------------------------------------------------------------------------------------------
    def _run_steps(self, node: Node, tmpl: dict, scope: dict, ctx: Ctx, token: SlotToken) -> None:
        if not token.take(ctx.cancel.is_set):
            self.set_phase(node, "Failed", "Stopped")
            return
        self.set_phase(node, "Running")
        slots = Slots(int_value(tmpl["parallelism"], f"{tmpl['name']}.parallelism")
                      if tmpl.get("parallelism") else None, self.runner.locks.cond)
        child_ctx = Ctx(ctx.tscope, node.id, ctx.cancel, ctx.extra, slots)
        step_scope = dict(scope)
        phase, message = "Succeeded", ""
        for gi, group_steps in enumerate(tmpl["steps"]):
            if ctx.cancel.is_set():
                phase, message = "Failed", "Stopped"
                break
            gname = f"{node.name}[{gi}]"
            gnode = self.add_node(gname, f"[{gi}]", "StepGroup", None, child_ctx, node)
            self.set_phase(gnode, "Running")
            groups: dict[str, list[Node]] = {}
            done: dict[str, Node] = {}

            def run_step(step: dict) -> None:
                n = self._run_task(gnode, f"{gname}.{step['name']}", step["name"], step, step_scope, child_ctx,
                                   groups, "steps")
                with self.runner.cond:
                    done[step["name"]] = n

            threads = [threading.Thread(target=self.runner.guard(run_step, s), daemon=True) for s in group_steps]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            failed = [(s, done[s["name"]]) for s in group_steps
                      if done[s["name"]].failed_or_error and not _continues(s, done[s["name"]].phase)]
            for s in group_steps:
                step_scope.update(self._task_variables(f"steps.{s['name']}", done[s["name"]], groups.get(s["name"])))
            if failed:
                self.set_phase(gnode, "Failed", f"child '{failed[0][1].name}' failed")
                phase, message = "Failed", f"child '{failed[0][1].name}' failed"
                break
            self.set_phase(gnode, "Succeeded")
        token.give_back()
        if phase == "Succeeded":
            self._template_outputs(node, tmpl, step_scope)
        self.set_phase(node, phase, message)

    def _template_outputs(self, node: Node, tmpl: dict, scope: dict) -> None:
        """Outputs of a DAG or steps template: ``valueFrom.parameter`` or ``valueFrom.expression``."""
        params = []
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            where = f"{tmpl['name']}.outputs.parameters.{p['name']}"
            try:
                if "parameter" in vf:
                    value = substitute(vf["parameter"], scope, where)
                elif "expression" in vf:
                    value = exprlang.format_value(exprlang.evaluate(vf["expression"], expression_env(scope)))
                elif "value" in p:
                    value = substitute(param_string(p["value"], where), scope, where)
                else:
                    raise Unsupported(f"{where}.valueFrom", "DAG/steps outputs need valueFrom.parameter or expression")
            except ExpressionError:
                if "default" not in vf:
                    raise
                value = param_string(vf["default"], where)
            params.append({"name": p["name"], "value": value})
        if params:
            node.outputs = {"parameters": params}

    # --- Pods ------------------------------------------------------------------------------------------------
    def _pod_name(self, node: Node, tmpl: dict) -> str:
        return f"{self.name}-{tmpl['name']}-{fnv32(node.name)}"

    def _pod_setup(self, node: Node, tmpl: dict, scope: dict) -> tuple[dict, PathMap, Path, dict]:
        """Substitute the pod's fields, pin and label it, and map its volumes to local folders."""
        pod_name = self._pod_name(node, tmpl)
        scope = {**scope, "pod.name": pod_name}
        where = f"{self.name}/{tmpl['name']}"
        selector = tmpl.get("nodeSelector") if tmpl.get("nodeSelector") is not None else self.spec.get("nodeSelector")
        selector = substitute_tree(selector or {}, scope, f"{where}.nodeSelector")
        labels = {**((self.spec.get("podMetadata") or {}).get("labels") or {}),
                  **((tmpl.get("metadata") or {}).get("labels") or {})}
        labels = {k: param_string(v, f"{where}.metadata.labels") for k, v in substitute_tree(labels, scope, f"{where}.metadata.labels").items()}
        pod_dir = self.log_dir / pod_name
        pod_dir.mkdir(parents=True, exist_ok=True)
        with self.runner.cond:
            node.pod_name = pod_name
            node.node_selector = selector
            node.host = selector.get("kubernetes.io/hostname")
            node.labels = labels
            node.logs = {"stdout": str(pod_dir / "stdout.log"), "stderr": str(pod_dir / "stderr.log")}
        body_key = "container" if "container" in tmpl else "script" if "script" in tmpl else "resource"
        body = substitute_tree(tmpl[body_key], scope, f"{where}.{body_key}")
        volumes = {v["name"]: v for v in (self.spec.get("volumes") or [])}
        volumes.update({v["name"]: v for v in (tmpl.get("volumes") or [])})
        mounts, config_maps = [], []
        for vm in body.get("volumeMounts") or []:
            if vm["name"] not in volumes:
                raise LocalRunError(f"{where}: volumeMount {vm['name']!r} names no volume")
            vol = substitute_tree(volumes[vm["name"]], scope, f"{where}.volumes.{vm['name']}")
            local = self._volume_local(vol, pod_dir, where)
            if "configMap" in vol:
                config_maps.append((vol["configMap"], local))
            if vm.get("subPath"):
                local = local / vm["subPath"]
            mounts.append(Mount(vm["mountPath"], local, bool(vm.get("readOnly"))))
        if not any(m.container_path.rstrip("/") == "/tmp" for m in mounts):
            (pod_dir / "tmp").mkdir(exist_ok=True)
            mounts.append(Mount("/tmp", pod_dir / "tmp"))
        paths = PathMap(mounts)
        for cm, local in config_maps:
            self._write_config_map(cm, local, paths)
        with self.runner.cond:
            node.mounts = {m.container_path: str(m.local_path) for m in mounts}
        return body, paths, pod_dir, scope

    def _write_config_map(self, cm: dict, local: Path, paths: PathMap) -> None:
        """A mounted ConfigMap's keys as files; container paths inside them point to the local folders."""
        data = self.runner.store.get("ConfigMap", cm["name"]).get("data") or {}
        for item in cm.get("items") or [{"key": k, "path": k} for k in data]:
            value = self.runner.store.config_map_value(cm["name"], item["key"], bool(cm.get("optional")))
            (local / item["path"]).parent.mkdir(parents=True, exist_ok=True)
            (local / item["path"]).write_text(paths.to_local(value or ""))

    def _volume_local(self, vol: dict, pod_dir: Path, where: str) -> Path:
        if "hostPath" in vol:
            hp = vol["hostPath"]
            local = self.runner.host_path(hp["path"], where)
            kind = hp.get("type", "")
            if kind == "Directory" and not local.is_dir():
                raise NodeError(f"hostPath {hp['path']} (type Directory) does not exist (local folder {local})")
            if kind in ("", "DirectoryOrCreate"):
                local.mkdir(parents=True, exist_ok=True)
            elif kind != "Directory":
                raise Unsupported(f"{where}.volumes.{vol['name']}.hostPath.type", kind)
            return local
        if "emptyDir" in vol:
            local = pod_dir / "volumes" / vol["name"]
            local.mkdir(parents=True, exist_ok=True)
            return local
        if "configMap" in vol:
            local = pod_dir / "volumes" / vol["name"]
            local.mkdir(parents=True, exist_ok=True)
            return local
        raise Unsupported(f"{where}.volumes.{vol['name']}", "only hostPath, emptyDir and configMap volumes run locally")

    def _run_pod(self, node: Node, tmpl: dict, scope: dict, ctx: Ctx, token: SlotToken) -> None:
        body, paths, pod_dir, scope = self._pod_setup(node, tmpl, scope)
        where = f"{self.name}/{tmpl['name']}"
        if not body.get("command"):
            raise Unsupported(f"{where}.container.command", "the image's entrypoint is unknown locally: give a command")
        argv = [paths.to_local(str(a)) for a in list(body["command"]) + list(body.get("args") or [])]
        if "source" in body:
            src = pod_dir / "script-source"
            src.write_text(paths.to_local(body["source"]))
            argv = [paths.to_local(str(a)) for a in body["command"]] + [str(src)]
        env = base_environment(self.runner.pass_env)
        env["TMPDIR"] = paths.to_local("/tmp")
        for e in body.get("env") or []:
            if "value" in e:
                env[e["name"]] = paths.to_local(param_string(e["value"], f"{where}.env.{e['name']}"))
            elif "valueFrom" in e:
                field_path = e["valueFrom"]["fieldRef"]["fieldPath"]
                known = {"metadata.name": node.pod_name, "metadata.namespace": self.namespace,
                         "spec.nodeName": node.host or "localhost", "status.podIP": "127.0.0.1"}
                if field_path not in known:
                    raise Unsupported(f"{where}.env.{e['name']}.valueFrom.fieldRef.fieldPath", field_path)
                env[e["name"]] = known[field_path]
            else:
                env[e["name"]] = ""
        cwd = Path(paths.to_local(body["workingDir"])) if body.get("workingDir") else pod_dir
        cwd.mkdir(parents=True, exist_ok=True)
        deadline = (duration_seconds(substitute(str(tmpl["activeDeadlineSeconds"]), scope, where), f"{where}.activeDeadlineSeconds")
                    if tmpl.get("activeDeadlineSeconds") is not None else None)
        if not token.take(ctx.cancel.is_set) or not self.slots.acquire(node.id, ctx.cancel.is_set):
            token.give_back()
            self.set_phase(node, "Failed", "Stopped before the pod started")
            return
        try:
            self.set_phase(node, "Running")
            (pod_dir / "command.json").write_text(json.dumps({"argv": argv, "cwd": str(cwd), "env": env}, indent=1))
            result = run_process(argv, env, cwd, Path(node.logs["stdout"]), Path(node.logs["stderr"]),
                                 deadline, ctx.cancel.is_set)
        finally:
            with self.runner.cond:
                node.finished_at = time.time()   # before the slot is free for the next pod
            self.slots.release(node.id)
            token.give_back()
        if result.reason == "start-error":
            self.set_phase(node, "Error", result.message)
            return
        outputs = {"exitCode": str(result.exit_code)}
        if result.reason == "deadline":
            node.outputs = outputs
            self.set_phase(node, "Failed", STEP_EXCEEDED)
            return
        if result.reason == "cancelled":
            node.outputs = outputs
            self.set_phase(node, "Failed", "Step exceeded its deadline" if self.deadline_hit
                           else "Stopped: the workflow was shut down")
            return
        if result.exit_code != 0:
            node.outputs = outputs
            self.set_phase(node, "Failed", f"Error (exit code {result.exit_code})")
            return
        stdout = Path(node.logs["stdout"]).read_text(errors="replace")
        outputs["result"] = paths.to_container(stdout[:-1] if stdout.endswith("\n") else stdout)
        params = []
        for p in (tmpl.get("outputs") or {}).get("parameters") or []:
            vf = p.get("valueFrom") or {}
            pwhere = f"{where}.outputs.parameters.{p['name']}"
            if "path" not in vf:
                raise Unsupported(f"{pwhere}.valueFrom", "pod outputs are read from valueFrom.path")
            local = Path(paths.to_local(substitute(vf["path"], scope, pwhere)))
            if local.is_file():
                text = local.read_text(errors="replace")
                value = paths.to_container(text[:-1] if text.endswith("\n") else text)
            elif "default" in vf:
                value = param_string(vf["default"], pwhere)
            else:
                node.outputs = outputs
                self.set_phase(node, "Error", f"failed to read output parameter {p['name']}: {vf['path']} does not exist")
                return
            params.append({"name": p["name"], "value": value})
        if params:
            outputs["parameters"] = params
        node.outputs = outputs
        self.set_phase(node, "Succeeded")

    # --- Resources: child workflows ------------------------------------------------------------------------
    def _run_resource(self, node: Node, tmpl: dict, scope: dict, ctx: Ctx, token: SlotToken) -> None:
        body, _paths, _pod_dir, scope = self._pod_setup(node, tmpl, scope)
        where = f"{self.name}/{tmpl['name']}.resource"
        if body.get("action") == "delete":
            self._delete_workflows(node, body, where, token, ctx)
            return
        if body.get("action") != "create":
            raise Unsupported(f"{where}.action", f"{body.get('action')!r}: only create and delete run locally")
        if body.get("flags"):
            raise Unsupported(f"{where}.flags", "flags with action create")
        try:
            manifest = yaml.safe_load(body["manifest"])
        except yaml.YAMLError as exc:
            raise NodeError(f"manifest is not valid YAML: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("kind") != "Workflow":
            raise Unsupported(f"{where}.manifest.kind", f"{(manifest or {}).get('kind')!r}: only Workflow objects are created locally")
        if body.get("setOwnerReference"):
            manifest.setdefault("metadata", {}).setdefault("ownerReferences", []).append(
                {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "name": self.name, "uid": self.uid,
                 "controller": True})
        if not token.take(ctx.cancel.is_set):
            self.set_phase(node, "Failed", "Stopped")
            return
        deadline = (duration_seconds(tmpl["activeDeadlineSeconds"], f"{where}.activeDeadlineSeconds")
                    if tmpl.get("activeDeadlineSeconds") is not None else None)
        try:
            self.set_phase(node, "Running")
            child = self.runner.create_workflow(manifest, parent=self, created_by=node.id)
            with self.runner.cond:
                node.child_workflow = child.name
            success, failure = body.get("successCondition"), body.get("failureCondition")
            start = time.time()
            phase, message = "Succeeded", ""
            while success or failure:
                with self.runner.cond:
                    obj = child.as_object()
                    if failure and _conditions_hold(failure, obj, where):
                        phase, message = "Failed", f"failure condition '{failure}' matched: child {child.name} is {child.phase}"
                        break
                    if success and _conditions_hold(success, obj, where):
                        break
                    if child.finished_at is not None:
                        phase = "Error"
                        message = (f"child {child.name} ended {child.phase} and neither successCondition nor "
                                   "failureCondition matches: on a cluster this node would wait forever")
                        break
                    if deadline is not None and time.time() - start > deadline:
                        phase, message = "Failed", STEP_EXCEEDED
                        break
                    if ctx.cancel.is_set():
                        phase, message = "Failed", "Stopped: the workflow was shut down (the child keeps running)"
                        break
                    self.runner.cond.wait(0.5)
        finally:
            token.give_back()
        if phase == "Succeeded":
            params = []
            for p in (tmpl.get("outputs") or {}).get("parameters") or []:
                vf = p.get("valueFrom") or {}
                if "jsonPath" not in vf:
                    raise Unsupported(f"{where}.outputs.parameters.{p['name']}.valueFrom", "resource outputs use jsonPath")
                with self.runner.cond:
                    value = jsonpath_get(child.as_object(), vf["jsonPath"])
                params.append({"name": p["name"], "value": exprlang.format_value(value)})
            node.outputs = {"parameters": params} if params else None
        self.set_phase(node, phase, message)

    def _delete_workflows(self, node: Node, body: dict, where: str, token: SlotToken, ctx: Ctx) -> None:
        """``kubectl delete workflows NAME... | --selector S`` (or a manifest naming one Workflow): the
        matching workflows stop at once, as deletion kills their pods."""
        names, selector = [], None
        if body.get("manifest"):
            manifest = yaml.safe_load(body["manifest"]) or {}
            if manifest.get("kind") != "Workflow" or not (manifest.get("metadata") or {}).get("name"):
                raise Unsupported(f"{where}.manifest", "delete needs a Workflow manifest with metadata.name")
            names.append(manifest["metadata"]["name"])
        flags = list(body.get("flags") or [])
        kind = None
        while flags:
            flag = flags.pop(0)
            if flag in ("--selector", "-l"):
                selector = flags.pop(0)
            elif flag.startswith("--selector="):
                selector = flag.split("=", 1)[1]
            elif flag == "--ignore-not-found":
                continue
            elif flag.startswith("-"):
                raise Unsupported(f"{where}.flags", flag)
            elif kind is None and not body.get("manifest"):
                kind = flag
            else:
                names.append(flag)
        if kind is not None and kind not in ("workflows", "workflow", "wf", "workflows.argoproj.io"):
            raise Unsupported(f"{where}.flags", f"deleting {kind}: only workflows are deleted locally")
        if not names and selector is None:
            raise Unsupported(f"{where}", "delete without a manifest, names or a selector")
        if not token.take(ctx.cancel.is_set):
            self.set_phase(node, "Failed", "Stopped")
            return
        self.set_phase(node, "Running")
        with self.runner.cond:
            victims = [wf for wf in self.runner.workflows.values()
                       if wf.namespace == self.namespace and not wf.deleted
                       and (wf.name in names or (selector is not None and _selector_matches(selector, wf.labels, where)))]
            for wf in victims:
                wf.deleted = True
                wf.terminate()
            self.runner.changed()
        token.give_back()
        self.set_phase(node, "Succeeded", f"deleted {len(victims)} workflow(s): {', '.join(w.name for w in victims)}"
                       if victims else "nothing to delete")

    def as_object(self) -> dict:
        """This workflow as ``kubectl get workflow -o json`` would show it (for conditions and jsonPath)."""
        return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
                "metadata": {"name": self.name, "namespace": self.namespace, "uid": self.uid,
                             "labels": dict(self.labels), "annotations": dict(self.annotations),
                             "ownerReferences": self.owner_references},
                "spec": {"arguments": {"parameters": [{"name": k, "value": v} for k, v in self.parameters.items()]}},
                "status": {"phase": self.phase, "message": self.message, "startedAt": iso(self.started_at),
                           "finishedAt": iso(self.finished_at),
                           "outputs": {"parameters": [{"name": k, "value": v} for k, v in self.global_outputs.items()]}}}

    def record(self) -> dict:
        return {"name": self.name, "namespace": self.namespace, "labels": self.labels, "deleted": self.deleted,
                "workflowTemplate": self.template_source, "parent": self.parent.name if self.parent else None,
                "createdBy": self.created_by, "phase": self.phase, "message": self.message,
                "startedAt": iso(self.started_at), "finishedAt": iso(self.finished_at),
                "started_at": self.started_at, "finished_at": self.finished_at,
                "parameters": self.parameters, "outputs": self.global_outputs,
                "nodes": [n.record() for n in self.nodes.values()]}


def _continues(step: dict, phase: str) -> bool:
    cont = step.get("continueOn") or {}
    return (phase == "Failed" and bool(cont.get("failed"))) or (phase == "Error" and bool(cont.get("error")))


def _item_label(item) -> str:
    if isinstance(item, dict):
        return ",".join(f"{k}:{_item_text(v)}" for k, v in sorted(item.items()))
    return _item_text(item)


def _item_text(v) -> str:
    return exprlang.format_value(v)


def _item_scope(item) -> dict[str, str]:
    scope = {"item": _item_text(item)}
    if isinstance(item, dict):
        scope.update({f"item.{k}": _item_text(v) for k, v in item.items()})
    return scope


def _selector_matches(selector: str, labels: dict[str, str], where: str) -> bool:
    """A Kubernetes label selector: k=v, k==v, k!=v (true when k is absent), k in (a,b), k notin (a,b), k, !k."""
    import re
    for part in re.split(r",(?![^()]*\))", selector):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w./-]*)", part)
        if m:
            key, op, value = m.groups()
            ok = labels.get(key) == value if op != "!=" else labels.get(key) != value
        elif (m := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", part)):
            options = [o.strip() for o in m.group(3).split(",")]
            ok = (labels.get(m.group(1)) in options) == (m.group(2) == "in")
        elif re.fullmatch(r"!?[\w./-]+", part):
            ok = (part.lstrip("!") in labels) != part.startswith("!")
        else:
            raise Unsupported(f"{where} label selector", part)
        if not ok:
            return False
    return True


def _conditions_hold(text: str, obj: dict, where: str) -> bool:
    """Kubernetes-selector style conditions (``status.phase == Succeeded``, ``status.phase in (Failed, Error)``),
    comma-separated, all must hold."""
    import re
    parts, depth, cur = [], 0, ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    for part in (p.strip() for p in parts if p.strip()):
        m = re.fullmatch(r"([\w.\-/]+)\s*(==|=|!=|\bin\b|\bnotin\b)\s*(.+)", part)
        if not m:
            raise Unsupported(f"{where} condition", part)
        key, op, raw = m.group(1), m.group(2), m.group(3).strip()
        value = obj
        for k in key.split("."):
            value = value.get(k) if isinstance(value, dict) else None
        value = "" if value is None else str(value)
        if op in ("in", "notin"):
            if not (raw.startswith("(") and raw.endswith(")")):
                raise Unsupported(f"{where} condition", part)
            options = [o.strip() for o in raw[1:-1].split(",")]
            ok = value in options
            if (op == "in") != ok:
                return False
        else:
            ok = value == raw
            if (op != "!=") != ok:
                return False
    return True

"""One running workflow: parameters, scope, nodes, retries, locks, deadline and exit handler.

How each template type runs lives in mixins: :mod:`.flow` (DAG, steps, loops), :mod:`.podexec` (pods),
:mod:`.resources` (child workflows).

Each node runs in its own thread and blocks until it is done, so a DAG is a loop that starts every task
whose dependencies are fulfilled and waits for the next one to finish. Argo's rules are kept where they
change results: depends logic, branch phases of skipped tasks, loop aggregation, retry policies, locks
held across retries, exit handlers that see ``workflow.status``. Errors Argo reports on a node (an
unresolved reference, a bad ``withParam``) become an ``Error`` node; a field the runner does not implement
stops the whole run with :class:`Unsupported`.
"""
from __future__ import annotations

import dataclasses
import random
import string
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from . import exprlang
from .context import MAX_DEPTH_MESSAGE, MAX_STACK_DEPTH, Ctx, NodeError, SlotToken
from .errors import ExpressionError, LocalRunError, Unsupported
from .flow import FlowMixin
from .locks import Slots
from .nodes import Node, failures, fnv32, iso
from .podexec import PodMixin
from .resources import ResourceMixin
from .spec import duration_seconds, int_value, param_string, resolve_workflow
from .templating import substitute, substitute_tree

if TYPE_CHECKING:
    from .runner import LocalRunner

__all__ = ["WorkflowRun", "Ctx", "NodeError", "SlotToken"]


def _suffix() -> str:
    return "".join(random.choices(string.ascii_lowercase + string.digits, k=5))


class WorkflowRun(FlowMixin, PodMixin, ResourceMixin):
    def __init__(self, runner: "LocalRunner", manifest: dict, parent: "WorkflowRun | None" = None,
                 created_by: str | None = None):
        self.runner = runner
        self.spec, meta, self.template_source = resolve_workflow(runner.store, manifest)
        # the API server cuts generateName to 58 characters before its 5-character suffix
        self.name = meta.get("name") or f"{meta['generateName'][:58]}{_suffix()}"
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
                ref, fallback = p["valueFrom"]["configMapKeyRef"], p["valueFrom"].get("default")
                value = self.runner.store.config_map_value(ref["name"], ref["key"],
                                                           bool(ref.get("optional")) or fallback is not None)
                if value is None:   # operator.go: a missing ConfigMap or key falls back to valueFrom.default
                    value = param_string(fallback if fallback is not None else "", where)
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
            try:
                holds = self.runner.locks.acquire(sync, self.name, self.cancel.is_set, *self.lock_order())
            except LocalRunError as exc:   # operator.go: "Failed to acquire the synchronization lock"
                with self.runner.cond:
                    self.phase, self.message = "Failed", f"Failed to acquire the synchronization lock. {exc}"
                    self.started_at = self.finished_at = time.time()
                    self.labels["workflows.argoproj.io/completed"] = "true"
                    self.runner.changed()
                return
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
        status, message = {"Skipped": "Succeeded", "Omitted": "Succeeded"}.get(root.phase, root.phase), root.message
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
                # operator.go (after "exit handlers were executed"): a failed exit handler fails a succeeded
                # workflow with its own message; an errored one makes it Error.
                status, message = exit_node.phase, exit_node.message
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

    def lock_order(self) -> tuple[int, float]:
        """Where this workflow's lock requests queue: its spec.priority, then its creation time."""
        return int_value(self.spec.get("priority", 0), "spec.priority"), self.created_at

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
                # the ConfigMap's name and key may use workflow variables (Argo substitutes them first)
                ref = substitute_tree(p["valueFrom"]["configMapKeyRef"], self.global_scope(), f"{where}.inputs.{name}")
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
        if ctx.depth + 1 >= MAX_STACK_DEPTH:
            token.give_back()
            return self.add_node(name, display, "Skipped", holder.get("template"), ctx, parent, "Error",
                                 MAX_DEPTH_MESSAGE)
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
        inner_ctx = Ctx(tscope, ctx.boundary, ctx.cancel, ctx.extra, ctx.slots, ctx.depth + 1)
        holds = []
        try:
            sync = tmpl.get("synchronization")
            if sync:
                sync = substitute_tree(sync, scope, f"{tname}.synchronization")
                self.set_phase(node, "Pending", "Waiting for lock")
                try:
                    holds = self.runner.locks.acquire(sync, node.id, ctx.cancel.is_set, *self.lock_order())
                except LocalRunError as exc:   # operator.go executeTemplate: the node errors, the run goes on
                    raise NodeError(f"failed to acquire lock: {exc}") from None
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
        else:
            try:
                if "resource" in tmpl:
                    self._run_resource(node, tmpl, scope, ctx, token)
                else:
                    self._run_pod(node, tmpl, scope, ctx, token)
            finally:
                self._drop_scratch(node)   # emptyDir and /tmp live as long as the pod

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
        attempt, last, message, max_deadline = 0, None, None, None
        while True:
            child = self.add_node(f"{node.name}({attempt})", f"{node.display_name}({attempt})", kind,
                                  tmpl["name"], ctx, node)
            child.retried = True
            # operator.go processNodeRetries: from the second attempt on, maxDuration (counted from the
            # first attempt's start) is the pod's deadline (workflowpod.go getDeadline).
            attempt_ctx = dataclasses.replace(ctx, execution_deadline=max_deadline) if max_deadline else ctx
            self._run_once(child, tmpl, scope, attempt_ctx, token, attempt)
            if max_total is not None and max_deadline is None:
                max_deadline = (child.started_at or time.time()) + max_total
            last = child
            token.give_back()
            if child.phase == "Succeeded" or ctx.cancel.is_set():
                break
            wait = base * factor ** attempt
            if cap is not None:
                wait = min(wait, cap)
            if max_deadline is not None and time.time() > max_deadline:
                message = "Max duration limit exceeded"
                break
            if max_deadline is not None and (child.finished_at or time.time()) + wait > max_deadline:
                message = "Backoff would exceed max duration limit"
                break
            retryable = {"Always": child.phase in ("Failed", "Error"), "OnFailure": child.phase == "Failed",
                         "OnError": child.phase == "Error", "OnTransientError": False}[policy]
            if not retryable:
                break
            if limit is not None and attempt >= limit:
                message = "No more retries left"
                break
            if retry.get("expression"):
                env = {"lastRetry": {"exitCode": (child.outputs or {}).get("exitCode", "-1"), "status": child.phase,
                                     "duration": str(int((child.finished_at or 0) - (child.started_at or 0))),
                                     "message": child.message}}
                if not exprlang.evaluate_bool(retry["expression"], env):
                    message = "retryStrategy.expression evaluated to false"
                    break
            self.set_phase(node, "Running", f"Backoff for {wait:g} seconds")
            if ctx.cancel.wait(wait):
                break
            attempt += 1
        node.outputs = last.outputs
        node.host, node.node_selector, node.pod_name = last.host, last.node_selector, last.pod_name
        node.labels, node.logs, node.mounts, node.child_workflow = last.labels, last.logs, last.mounts, last.child_workflow
        self.set_phase(node, last.phase, last.message if message is None else message)


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



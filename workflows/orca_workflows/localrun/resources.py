"""Resource templates: create a child Workflow and wait on its conditions, or delete workflows
(by name or label selector). Mixed into :class:`~.engine.WorkflowRun`."""
from __future__ import annotations

import re
import time

import yaml

from . import exprlang
from .context import Ctx, NodeError, SlotToken
from .errors import Unsupported
from .jsonpath import jsonpath_get
from .nodes import Node
from .podexec import STEP_EXCEEDED
from .spec import duration_seconds


class ResourceMixin:
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


def _selector_matches(selector: str, labels: dict[str, str], where: str) -> bool:
    """A Kubernetes label selector: k=v, k==v, k!=v (true when k is absent), k in (a,b), k notin (a,b), k, !k."""
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


"""Workflow nodes (as in a Workflow's ``status.nodes``) and the variables a finished node exposes."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from .exprlang import to_json
from .templating import SKIPPED_OUTPUTS

DONE_PHASES = ("Succeeded", "Failed", "Error", "Skipped", "Omitted")


def fnv32(text: str) -> int:
    h = 0x811C9DC5
    for b in text.encode():
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Node:
    id: str
    name: str
    display_name: str
    type: str                 # Pod, DAG, Steps, StepGroup, TaskGroup, Retry, Skipped
    workflow: str
    template: str | None = None
    phase: str = "Pending"
    boundary_id: str | None = None
    children: list[str] = field(default_factory=list)
    started_at: float | None = None
    finished_at: float | None = None
    message: str = ""
    outputs: dict | None = None      # {"parameters": [{"name", "value"}], "result": str, "exitCode": str}
    inputs: dict | None = None
    host: str | None = None          # the nodeSelector's kubernetes.io/hostname
    node_selector: dict | None = None
    pod_name: str | None = None
    labels: dict = field(default_factory=dict)
    logs: dict | None = None
    mounts: dict | None = None       # container path -> local folder
    retried: bool = False            # an attempt under a Retry node
    child_workflow: str | None = None
    loop_index: int | None = None

    @property
    def fulfilled(self) -> bool:
        return self.phase in DONE_PHASES

    @property
    def completed(self) -> bool:
        return self.phase in ("Succeeded", "Failed", "Error")

    @property
    def failed_or_error(self) -> bool:
        return self.phase in ("Failed", "Error")

    def output_parameter(self, name: str) -> str | None:
        for p in (self.outputs or {}).get("parameters") or []:
            if p["name"] == name:
                return p["value"]
        return None

    def record(self) -> dict:
        data = asdict(self)
        data["startedAt"], data["finishedAt"] = iso(self.started_at), iso(self.finished_at)
        data["duration_s"] = (round(self.finished_at - self.started_at, 3)
                              if self.started_at and self.finished_at else None)
        return data


def node_variables(prefix: str, node: Node) -> dict[str, str]:
    """``tasks.NAME.*`` / ``steps.NAME.*`` variables of one finished node (not a loop group)."""
    scope = {f"{prefix}.id": node.id, f"{prefix}.status": node.phase}
    if node.phase in ("Skipped", "Omitted"):
        scope[f"{prefix}.outputs"] = SKIPPED_OUTPUTS
    if node.started_at:
        scope[f"{prefix}.startedAt"] = iso(node.started_at)
    if node.finished_at:
        scope[f"{prefix}.finishedAt"] = iso(node.finished_at)
    outputs = node.outputs or {}
    for p in outputs.get("parameters") or []:
        scope[f"{prefix}.outputs.parameters.{p['name']}"] = p["value"]
    if outputs.get("result") is not None:
        scope[f"{prefix}.outputs.result"] = outputs["result"]
    if outputs.get("exitCode") is not None:
        scope[f"{prefix}.exitCode"] = outputs["exitCode"]
    return scope


def _aggregated_value_list(values: list[str]) -> str:
    """Argo's aggregatedJSONValueList: native JSON if every value is a JSON object or array, else strings."""
    parsed = []
    for v in values:
        try:
            item = json.loads(v)
        except json.JSONDecodeError:
            return to_json(values)
        if not isinstance(item, (dict, list)):
            return to_json(values)
        parsed.append(item)
    return to_json(parsed)


def loop_variables(prefix: str, children: list[Node], phase: str) -> dict[str, str]:
    """Aggregated outputs of a fanned-out task, in loop order; children without outputs are left out."""
    scope = {f"{prefix}.status": phase}
    ordered = sorted(children, key=lambda n: n.loop_index if n.loop_index is not None else 0)
    param_list, results, by_name = [], [], {}
    for child in ordered:
        if child.phase != "Succeeded":  # Argo: operator.go:3762 (processAggregateNodeOutputs)
            continue
        outputs = child.outputs or {}
        params = outputs.get("parameters") or []
        if params:
            param_list.append({p["name"]: p["value"] for p in params})
            for p in params:
                by_name.setdefault(p["name"], []).append(p["value"])
        if outputs.get("result") is not None:
            try:
                item = json.loads(outputs["result"])
                results.append(item if isinstance(item, dict) else outputs["result"])
            except json.JSONDecodeError:
                results.append(outputs["result"])
    if children:
        scope[f"{prefix}.outputs.parameters"] = to_json(param_list)
        scope[f"{prefix}.outputs.result"] = to_json(results)
        for name, values in by_name.items():
            scope[f"{prefix}.outputs.parameters.{name}"] = _aggregated_value_list(values)
    return scope


def failures(nodes: list[Node]) -> str:
    """``{{workflow.failures}}`` as Argo gives it: the failed and errored nodes as Go's json.Marshal writes
    them (``null`` when none), then quoted once more with strconv.Quote (operator.go, "This strconv.Quote
    is necessary ...")."""
    items = [{"displayName": n.display_name, "message": n.message, "templateName": n.template or "",
              "phase": n.phase, "podName": n.pod_name or n.id, "finishedAt": iso(n.finished_at)}
             for n in nodes if n.failed_or_error]
    text = json.dumps(items or None, separators=(",", ":"), ensure_ascii=False)
    for ch, esc in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                    ("\u2029", "\\u2029")):  # Go's json HTML-escapes these
        text = text.replace(ch, esc)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


"""Loading Argo objects and checking that the runner implements every field they use.

Each object is walked against the schema below. A key missing from the schema raises
:class:`Unsupported` with its field path. Keys marked ``NO_LOCAL_EFFECT`` are understood and deliberately
have no effect on one machine (images, resources, pod GC, security contexts, ...).
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

from .errors import LocalRunError, Unsupported

V = "value"                     # consumed by the runner
NO_LOCAL_EFFECT = "no-effect"   # understood; no meaning on one machine


def _list(item):
    return [item]


PARAMETER = {"name": V, "value": V, "default": V, "enum": V, "description": V, "globalName": V,
             "valueFrom": {"path": V, "default": V, "parameter": V, "expression": V, "jsonPath": V,
                           "configMapKeyRef": {"name": V, "key": V, "optional": V}}}
ARGUMENTS = {"parameters": _list(PARAMETER)}
METADATA = {"labels": V, "annotations": V}
SYNC = {"mutexes": _list({"name": V, "namespace": V}),
        "semaphores": _list({"configMapKeyRef": {"name": V, "key": V, "optional": V}, "namespace": V})}
RETRY = {"limit": V, "retryPolicy": V, "expression": V,
         "backoff": {"duration": V, "factor": V, "maxDuration": V, "cap": V}}
ENV_VAR = {"name": V, "value": V,
           "valueFrom": {"fieldRef": {"fieldPath": V, "apiVersion": NO_LOCAL_EFFECT}}}
CONTAINER = {"name": V, "image": NO_LOCAL_EFFECT, "imagePullPolicy": NO_LOCAL_EFFECT, "command": V, "args": V,
             "env": _list(ENV_VAR), "workingDir": V,
             "volumeMounts": _list({"name": V, "mountPath": V, "readOnly": V, "subPath": V}),
             "resources": NO_LOCAL_EFFECT, "securityContext": NO_LOCAL_EFFECT,
             "terminationMessagePath": V, "terminationMessagePolicy": V}
SCRIPT = {**CONTAINER, "source": V}
RESOURCE = {"action": V, "manifest": V, "successCondition": V, "failureCondition": V,
            "setOwnerReference": V, "flags": V}
VOLUME = {"name": V, "hostPath": {"path": V, "type": V}, "emptyDir": {"medium": NO_LOCAL_EFFECT, "sizeLimit": NO_LOCAL_EFFECT},
          "configMap": {"name": V, "optional": V, "defaultMode": NO_LOCAL_EFFECT,
                        "items": _list({"key": V, "path": V, "mode": NO_LOCAL_EFFECT})}}
TEMPLATE_REF = {"name": V, "template": V}
EXIT_HOOK = {"exit": {"template": V, "templateRef": TEMPLATE_REF, "arguments": ARGUMENTS}}
_TASK_COMMON = {"name": V, "template": V, "templateRef": TEMPLATE_REF, "arguments": ARGUMENTS, "when": V,
                "hooks": EXIT_HOOK,
                "withItems": V, "withParam": V, "withSequence": {"count": V, "start": V, "end": V, "format": V},
                "continueOn": {"failed": V, "error": V}}
DAG_TASK = {**_TASK_COMMON, "dependencies": V, "depends": V}
STEP = dict(_TASK_COMMON)
TEMPLATE = {
    "name": V, "inputs": {"parameters": _list(PARAMETER)},
    "outputs": {"parameters": _list(PARAMETER), "result": V, "exitCode": V},
    "container": CONTAINER, "script": SCRIPT, "resource": RESOURCE,
    "dag": {"tasks": _list(DAG_TASK), "target": V, "failFast": V}, "steps": _list(_list(STEP)),
    "nodeSelector": V, "metadata": METADATA, "volumes": _list(VOLUME), "activeDeadlineSeconds": V,
    "retryStrategy": RETRY, "parallelism": V, "synchronization": SYNC,
    "securityContext": NO_LOCAL_EFFECT, "podSecurityContext": NO_LOCAL_EFFECT, "tolerations": NO_LOCAL_EFFECT,
    "serviceAccountName": NO_LOCAL_EFFECT, "automountServiceAccountToken": NO_LOCAL_EFFECT,
    "priorityClassName": NO_LOCAL_EFFECT, "schedulerName": NO_LOCAL_EFFECT, "metrics": NO_LOCAL_EFFECT,
    "archiveLocation": NO_LOCAL_EFFECT,
    # Scheduling: a local pod starts at once, never waits Pending for a node.
    "pendingTimeout": NO_LOCAL_EFFECT,
}
WORKFLOW_SPEC = {
    "templates": _list(TEMPLATE), "entrypoint": V, "arguments": ARGUMENTS, "volumes": _list(VOLUME),
    "parallelism": V, "nodeSelector": V, "onExit": V, "hooks": EXIT_HOOK,
    "activeDeadlineSeconds": V, "workflowTemplateRef": {"name": V}, "synchronization": SYNC,
    "podMetadata": METADATA, "workflowMetadata": METADATA,
    "serviceAccountName": NO_LOCAL_EFFECT, "automountServiceAccountToken": NO_LOCAL_EFFECT,
    "ttlStrategy": NO_LOCAL_EFFECT, "podGC": NO_LOCAL_EFFECT, "securityContext": NO_LOCAL_EFFECT,
    "tolerations": NO_LOCAL_EFFECT, "imagePullSecrets": NO_LOCAL_EFFECT, "priority": NO_LOCAL_EFFECT,
    "podPriorityClassName": NO_LOCAL_EFFECT, "schedulerName": NO_LOCAL_EFFECT, "metrics": NO_LOCAL_EFFECT,
    "podDisruptionBudget": NO_LOCAL_EFFECT, "archiveLogs": NO_LOCAL_EFFECT, "dnsPolicy": NO_LOCAL_EFFECT,
    "executor": NO_LOCAL_EFFECT,
}
OBJECT_META = {"name": V, "generateName": V, "namespace": V, "labels": V, "annotations": V,
               "ownerReferences": V}
WORKFLOW = {"apiVersion": V, "kind": V, "metadata": OBJECT_META, "spec": WORKFLOW_SPEC}
CRON_WORKFLOW = {"apiVersion": V, "kind": V, "metadata": OBJECT_META, "spec": {
    "schedules": V, "timezone": NO_LOCAL_EFFECT, "concurrencyPolicy": NO_LOCAL_EFFECT,
    "startingDeadlineSeconds": NO_LOCAL_EFFECT, "successfulJobsHistoryLimit": NO_LOCAL_EFFECT,
    "failedJobsHistoryLimit": NO_LOCAL_EFFECT, "suspend": V, "workflowSpec": WORKFLOW_SPEC,
    "workflowMetadata": METADATA}}
CONFIG_MAP = {"apiVersion": V, "kind": V, "metadata": OBJECT_META, "data": V}
SCHEMAS = {"Workflow": WORKFLOW, "WorkflowTemplate": WORKFLOW, "CronWorkflow": CRON_WORKFLOW, "ConfigMap": CONFIG_MAP}

_V3_HINTS = {"running": "lifecycle hooks other than 'exit'", "expression": "lifecycle hooks other than 'exit'","mutex": "Argo v4 knows only 'mutexes' (a list)", "semaphore": "Argo v4 knows only 'semaphores' (a list)",
             "schedule": "Argo v4 CronWorkflows take 'schedules' (a list)", "onExit": "task-level onExit"}


def check_fields(obj: Any, schema: Any, path: str) -> None:
    """Raise Unsupported for the first key of ``obj`` that ``schema`` does not know."""
    if schema in (V, NO_LOCAL_EFFECT) or obj is None:
        return
    if isinstance(schema, list):
        if not isinstance(obj, list):
            raise LocalRunError(f"{path}: expected a list")
        for i, item in enumerate(obj):
            check_fields(item, schema[0], f"{path}[{i}]")
        return
    if not isinstance(obj, dict):
        raise LocalRunError(f"{path}: expected a mapping, got {type(obj).__name__}")
    for key, value in obj.items():
        if key not in schema:
            raise Unsupported(f"{path}.{key}", _V3_HINTS.get(key, ""))
        check_fields(value, schema[key], f"{path}.{key}")


# --- Loading -----------------------------------------------------------------------------------------
def load_documents(paths: list[str | Path]) -> list[dict]:
    """Every YAML document in the given files or directories (``*.yaml``/``*.yml``, sorted)."""
    docs = []
    for p in map(Path, paths):
        files = sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]
        if not files:
            raise LocalRunError(f"{p}: no YAML files")
        for f in files:
            if not f.is_file():
                raise LocalRunError(f"{f}: no such file")
            try:
                loaded = list(yaml.safe_load_all(f.read_text()))
            except yaml.YAMLError as exc:
                raise LocalRunError(f"{f}: not valid YAML: {exc}") from exc
            for doc in loaded:
                if doc is None:
                    continue
                if not isinstance(doc, dict) or "kind" not in doc:
                    raise LocalRunError(f"{f}: a document has no 'kind'")
                doc.setdefault("metadata", {})
                doc["metadata"].setdefault("annotations", {})
                doc["metadata"]["annotations"].setdefault("orca-argo/source", str(f))
                docs.append(doc)
    return docs


class ObjectStore:
    """WorkflowTemplates, CronWorkflows, Workflows and ConfigMaps by kind and name."""

    def __init__(self, docs: list[dict]):
        self.objects: dict[tuple[str, str], dict] = {}
        for doc in docs:
            self.add(doc)

    def add(self, doc: dict) -> None:
        kind = doc["kind"]
        if kind not in SCHEMAS:
            raise Unsupported(f"kind {kind}", "the local runner reads Workflow, WorkflowTemplate, CronWorkflow, ConfigMap")
        name = (doc.get("metadata") or {}).get("name") or (doc.get("metadata") or {}).get("generateName")
        if not name:
            raise LocalRunError(f"a {kind} has no metadata.name")
        check_fields(doc, SCHEMAS[kind], f"{kind}/{name}")
        self.objects[(kind, name)] = doc

    def get(self, kind: str, name: str) -> dict:
        if (kind, name) not in self.objects:
            known = sorted(n for k, n in self.objects if k == kind)
            raise LocalRunError(f"{kind} {name!r} is not loaded (loaded: {', '.join(known) or 'none'})")
        return self.objects[(kind, name)]

    def config_map_value(self, name: str, key: str, optional: bool = False) -> str | None:
        cm = self.objects.get(("ConfigMap", name))
        if cm is None or key not in (cm.get("data") or {}):
            if optional:
                return None
            raise LocalRunError(f"ConfigMap {name!r} key {key!r} is not loaded (pass the ConfigMap YAML with --configmap)")
        return str(cm["data"][key])


# --- Small conversions ---------------------------------------------------------------------------------
def param_string(value: Any, where: str) -> str:
    """Argo parameter values are strings; YAML scalars become their Go text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    raise LocalRunError(f"{where}: a parameter value must be a string or number, got {type(value).__name__}")


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def duration_seconds(value: Any, where: str) -> float:
    """A Go duration ('1m30s', '10s') or a plain number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise LocalRunError(f"{where}: {value!r} is not a duration")
    return total


def int_value(value: Any, where: str) -> int:
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise LocalRunError(f"{where}: {value!r} is not an integer") from exc


# --- Workflows from templates --------------------------------------------------------------------------
def merge_arguments(base: list[dict], override: list[dict], where: str) -> list[dict]:
    """Workflow arguments over a WorkflowTemplate's: same names replace value, the rest keep defaults."""
    merged = {p["name"]: dict(p) for p in base}
    for p in override:
        if p["name"] not in merged:
            merged[p["name"]] = dict(p)
            continue
        target = merged[p["name"]]
        for key in ("value", "valueFrom"):
            if key in p:
                target.pop("value", None)
                target.pop("valueFrom", None)
                target[key] = p[key]
    return list(merged.values())


def workflow_from_cron(cron: dict) -> dict:
    spec = cron.get("spec") or {}
    if spec.get("suspend"):
        raise LocalRunError(f"CronWorkflow {cron['metadata']['name']} is suspended (spec.suspend: true): "
                            "un-suspend it to run it")
    meta = {"generateName": cron["metadata"]["name"] + "-",
            "labels": {**((spec.get("workflowMetadata") or {}).get("labels") or {}),
                       "workflows.argoproj.io/cron-workflow": cron["metadata"]["name"]},
            "annotations": dict((spec.get("workflowMetadata") or {}).get("annotations") or {})}
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow", "metadata": meta,
            "spec": copy.deepcopy(spec["workflowSpec"])}


def workflow_from_template(name: str, parameters: dict[str, str] | None = None, generate_name: str | None = None) -> dict:
    """What ``argo submit --from workflowtemplate/NAME -p k=v`` creates."""
    params = [{"name": k, "value": v} for k, v in (parameters or {}).items()]
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Workflow",
            "metadata": {"generateName": generate_name or f"{name}-"},
            "spec": {"workflowTemplateRef": {"name": name}, "arguments": {"parameters": params}}}


def resolve_workflow(store: ObjectStore, workflow: dict) -> tuple[dict, dict, str | None]:
    """The effective spec of a Workflow (its template's spec under its own fields), its metadata, and the
    name of the WorkflowTemplate it came from (None for an inline workflow)."""
    check_fields(workflow, WORKFLOW, f"Workflow/{workflow['metadata'].get('name') or workflow['metadata'].get('generateName')}")
    spec = copy.deepcopy(workflow.get("spec") or {})
    meta = copy.deepcopy(workflow.get("metadata") or {})
    ref = spec.pop("workflowTemplateRef", None)
    if ref:
        base = copy.deepcopy(store.get("WorkflowTemplate", ref["name"])["spec"])
        args = merge_arguments((base.get("arguments") or {}).get("parameters") or [],
                               (spec.get("arguments") or {}).get("parameters") or [], "arguments")
        merged = {**base, **{k: v for k, v in spec.items() if k != "arguments"}}
        merged["arguments"] = {"parameters": args}
        wmeta = base.get("workflowMetadata") or {}
        meta["labels"] = {**(wmeta.get("labels") or {}), **(meta.get("labels") or {})}
        meta["annotations"] = {**(wmeta.get("annotations") or {}), **(meta.get("annotations") or {})}
        meta.setdefault("labels", {})["workflows.argoproj.io/workflow-template"] = ref["name"]
        spec = merged
    if not spec.get("entrypoint"):
        raise LocalRunError("the workflow has no entrypoint")
    return spec, meta, (ref or {}).get("name")

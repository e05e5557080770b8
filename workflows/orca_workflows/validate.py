"""Offline validation of Argo objects: Argo's own CRD schemas made strict, their CEL rules, and references.

No cluster, argo CLI or kubeconform can run here, so this is the strongest check available:

1. **Schema.** Argo v4's full CRD ``openAPIV3Schema`` (``argo_crds/``), made strict the way an API
   server with the full CRDs behaves: ``additionalProperties: false`` on every object schema that lists
   ``properties`` and does not preserve unknown fields; ``x-kubernetes-int-or-string`` becomes integer
   or string. Validated with ``jsonschema``: catches unknown fields, bad enums, types, size limits.
2. **CEL.** Every ``x-kubernetes-validations`` rule is evaluated with ``cel-python`` where it applies.
3. **References** (the schema cannot see them): entrypoint, onExit, every task/step/hook template and
   templateRef, arguments against the called template's inputs, ``{{inputs|workflow|tasks|steps...}}``
   references, DAG dependencies, the child workflows in resource manifests (schema-checked as Workflows
   too), and the ConfigMaps that semaphores and volumes name (when the ConfigMaps are in the set).
"""
from __future__ import annotations

import gzip
import json
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import yaml

CRD_DIR = Path(__file__).with_name("argo_crds")
KINDS = ("WorkflowTemplate", "CronWorkflow", "Workflow")
REF_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
GLOBALS = {"workflow.name", "workflow.namespace", "workflow.uid", "workflow.serviceAccountName",
           "workflow.creationTimestamp", "workflow.priority", "workflow.duration", "workflow.mainEntrypoint",
           "workflow.scheduledTime", "pod.name", "retries"}
EXIT_GLOBALS = {"workflow.status", "workflow.failures"}
METRIC_VARIABLES = {"duration", "status", "exitCode", "retries"}  # Argo's template-metric variables


# --- 1. The strict schema --------------------------------------------------------------------------------
def import_crds(src_dir: str | Path, out_dir: Path = CRD_DIR) -> list[Path]:
    """Store the schemas of Argo's ``crd-full-*.yaml`` as compact gzipped JSON (how argo_crds/ was made)."""
    written = []
    for path in sorted(Path(src_dir).glob("crd-full-*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        version = crd["spec"]["versions"][0]
        data = {"source": f"argoproj/argo-workflows manifests/base/crds/full/{path.name}",
                "group": crd["spec"]["group"], "version": version["name"], "kind": crd["spec"]["names"]["kind"],
                "openAPIV3Schema": version["schema"]["openAPIV3Schema"]}
        out = Path(out_dir) / f"{data['kind']}.schema.json.gz"
        out.write_bytes(gzip.compress(json.dumps(data, sort_keys=True, separators=(",", ":")).encode(), mtime=0))
        written.append(out)
    return written


def make_strict(schema):
    """A copy of an OpenAPI v3 CRD schema that rejects what a Kubernetes API server would reject."""
    if isinstance(schema, list):
        return [make_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: make_strict(v) if k not in ("enum", "default", "example") else v for k, v in schema.items()}
    if out.pop("x-kubernetes-int-or-string", False):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.pop("nullable", False) and "type" in out:
        out["type"] = [out["type"], "null"]
    preserve = out.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in out and not preserve and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


@lru_cache(maxsize=None)
def crd(kind: str) -> dict:
    path = CRD_DIR / f"{kind}.schema.json.gz"
    return json.loads(gzip.decompress(path.read_bytes()))


@lru_cache(maxsize=None)
def validator(kind: str) -> jsonschema.Draft7Validator:
    """The strict schema of ``kind``, built once per process."""
    return jsonschema.Draft7Validator(make_strict(crd(kind)["openAPIV3Schema"]))


def _where(path) -> str:
    return ".".join(str(p) for p in path) or "(root)"


def schema_problems(doc: dict) -> list[str]:
    kind = doc.get("kind")
    if kind not in KINDS:
        return [f"kind {kind!r} is not an Argo kind this validator knows ({', '.join(KINDS)})"]
    problems = [f"{_where(e.absolute_path)}: {e.message}"
                for e in sorted(validator(kind).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))]
    expected = f"{crd(kind)['group']}/{crd(kind)['version']}"
    if doc.get("apiVersion") != expected:
        problems.append(f"apiVersion: {doc.get('apiVersion')!r} is not {expected!r}")
    return problems + metadata_problems(doc)


def metadata_problems(doc: dict) -> list[str]:
    """What the CRD schema leaves to the API server: names and labels."""
    meta = doc.get("metadata") or {}
    name, generate = meta.get("name"), meta.get("generateName")
    problems = []
    if not name and not generate:
        problems.append("metadata: neither name nor generateName")
    if name and (len(name) > 63 or not NAME_RE.match(name)):
        problems.append(f"metadata.name: {name!r} is not a DNS label of at most 63 characters")
    for key, value in (meta.get("labels") or {}).items():
        text = str(value)
        if "{{" not in text and (len(text) > 63 or not re.fullmatch(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?",
                                                                       text)):
            problems.append(f"metadata.labels.{key}: {text!r} is not a valid label value")
    return problems


# --- 2. CEL rules ------------------------------------------------------------------------------------------
@lru_cache(maxsize=None)
def _cel_program(rule: str):
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_problems(doc: dict) -> list[str]:
    import celpy

    problems: list[str] = []

    def walk(schema: dict, value, path: list) -> None:
        for check in schema.get("x-kubernetes-validations", []):
            try:
                ok = _cel_program(check["rule"]).evaluate({"self": celpy.json_to_cel(value)})
            except Exception as exc:  # noqa: BLE001 - a rule that cannot be evaluated is reported, not ignored
                problems.append(f"{_where(path)}: CEL rule {check['rule']!r} could not be evaluated: {exc}")
                continue
            if not bool(ok):
                problems.append(f"{_where(path)}: {check.get('message', check['rule'])}")
        if isinstance(value, dict):
            props = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for key, sub in value.items():
                if key in props:
                    walk(props[key], sub, path + [key])
                elif isinstance(extra, dict):
                    walk(extra, sub, path + [key])
        elif isinstance(value, list) and isinstance(schema.get("items"), dict):
            for i, sub in enumerate(value):
                walk(schema["items"], sub, path + [i])

    if doc.get("kind") in KINDS:
        walk(crd(doc["kind"])["openAPIV3Schema"], doc, [])
    return problems


# --- 3. References -----------------------------------------------------------------------------------------
def refs_in(value) -> list[str]:
    """Every ``{{...}}`` expression in a value (strings inside dicts and lists too)."""
    if isinstance(value, str):
        return REF_RE.findall(value)
    if isinstance(value, dict):
        return [r for v in value.values() for r in refs_in(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs_in(v)]
    return []


def _params(holder: dict | None, key: str = "parameters") -> list[dict]:
    return list((holder or {}).get(key) or [])


def _required(param: dict) -> bool:
    return "value" not in param and "default" not in param and "valueFrom" not in param


class References:
    """Reference checks over a set of documents (WorkflowTemplates are resolvable across the set)."""

    def __init__(self, docs: list[dict]):
        self.docs = docs
        self.wftmpls = {d["metadata"].get("name"): d for d in docs if d.get("kind") == "WorkflowTemplate"}
        self.configmaps = {d["metadata"].get("name") for d in docs if d.get("kind") == "ConfigMap"}
        self.ref_targets = {(t["name"], t["template"]) for d in docs for t in self._all_template_refs(d)}
        self.problems: list[str] = []

    # helpers
    def _all_template_refs(self, doc: dict) -> list[dict]:
        out = []
        for tmpl in (doc.get("spec") or {}).get("templates") or []:
            for task in self._calls(tmpl):
                if task.get("templateRef"):
                    out.append(task["templateRef"])
        return out

    @staticmethod
    def _calls(tmpl: dict) -> list[dict]:
        """Tasks and steps of a template (hooks are checked with their task)."""
        if "dag" in tmpl:
            return list(tmpl["dag"].get("tasks") or [])
        if "steps" in tmpl:
            return [s for group in tmpl["steps"] or [] for s in group]
        return []

    def report(self, where: str, message: str) -> None:
        self.problems.append(f"{where}: {message}")

    def resolve(self, doc_templates: dict, call: dict, where: str) -> dict | None:
        if call.get("templateRef"):
            ref = call["templateRef"]
            target = self.wftmpls.get(ref.get("name"))
            if target is None:
                self.report(where, f"templateRef: no WorkflowTemplate {ref.get('name')!r}")
                return None
            found = {t["name"]: t for t in target["spec"].get("templates") or []}.get(ref.get("template"))
            if found is None:
                self.report(where, f"templateRef: {ref.get('name')} has no template {ref.get('template')!r}")
            return found
        name = call.get("template")
        if name not in doc_templates:
            self.report(where, f"template {name!r} does not exist")
            return None
        return doc_templates[name]

    def check_arguments(self, target: dict, arguments: dict | None, where: str, what: str) -> None:
        given = {p["name"] for p in _params(arguments)}
        declared = {p["name"]: p for p in _params(target.get("inputs"))}
        for name in sorted(given - set(declared)):
            self.report(where, f"argument {name!r} is not an input of {what}")
        for name, param in declared.items():
            if _required(param) and name not in given:
                self.report(where, f"input {name!r} of {what} is not given")

    # documents
    def check(self) -> list[str]:
        for doc in self.docs:
            kind, name = doc.get("kind"), (doc.get("metadata") or {}).get("name") or "(generated)"
            label = f"{kind}/{name}"
            if kind in ("WorkflowTemplate", "Workflow"):
                self.check_workflow_spec(doc.get("spec") or {}, label, name if kind == "WorkflowTemplate" else "")
            elif kind == "CronWorkflow":
                self.check_workflow_spec(doc["spec"].get("workflowSpec") or {}, f"{label}.workflowSpec", "")
        return self.problems

    def check_workflow_spec(self, spec: dict, label: str, doc_name: str) -> None:
        ref = spec.get("workflowTemplateRef")
        if ref:
            self.check_template_ref_call(ref.get("name"), spec.get("arguments"), label)
            return
        templates = {t["name"]: t for t in spec.get("templates") or []}
        args = {p["name"] for p in _params(spec.get("arguments"))}
        global_outputs = {p["globalName"] for t in templates.values() for p in _params(t.get("outputs"))
                          if p.get("globalName")}
        entry = spec.get("entrypoint")
        if entry not in templates:
            self.report(label, f"entrypoint {entry!r} is not a template")
        else:
            for p in _params(templates[entry].get("inputs")):
                if _required(p) and p["name"] not in args:
                    self.report(label, f"entrypoint input {p['name']!r} is not a workflow argument")
        exit_reachable = set()
        if spec.get("onExit"):
            if spec["onExit"] not in templates:
                self.report(label, f"onExit {spec['onExit']!r} is not a template")
            else:
                exit_reachable = self.reachable(templates, spec["onExit"])
        for sync_holder, where in [(spec, label)] + [(t, f"{label}.templates.{t['name']}") for t in templates.values()]:
            self.check_sync_and_volumes(sync_holder, where)
        for tname, tmpl in templates.items():
            where = f"{label}.templates.{tname}"
            scope = {"args": args, "globals": global_outputs, "exit": tname in exit_reachable,
                     "external": (doc_name, tname) in self.ref_targets}
            self.check_template(templates, tmpl, where, scope)

    def reachable(self, templates: dict, start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            name = todo.pop()
            if name in seen or name not in templates:
                continue
            seen.add(name)
            todo += [c.get("template") for c in self._calls(templates[name]) if c.get("template")]
        return seen

    def check_sync_and_volumes(self, holder: dict, where: str) -> None:
        if not self.configmaps:
            return
        for sem in (holder.get("synchronization") or {}).get("semaphores") or []:
            cm = (sem.get("configMapKeyRef") or {}).get("name")
            if cm and cm not in self.configmaps:
                self.report(where, f"semaphore ConfigMap {cm!r} is not defined")
        for vol in holder.get("volumes") or []:
            cm = (vol.get("configMap") or {}).get("name")
            if cm and cm not in self.configmaps:
                self.report(where, f"volume {vol['name']!r}: ConfigMap {cm!r} is not defined")

    def check_ref(self, ref: str, where: str, scope: dict, inputs: set[str], tasks: dict | None = None,
                  earlier_steps: dict | None = None, has_item: bool = False) -> None:
        """One ``{{...}}`` expression against what is in scope where it is used."""
        if ref.startswith("="):
            self.report(where, f"expression {{{{{ref}}}}} is not checked by this validator; avoid it")
            return
        parts = ref.split(".")
        if ref in GLOBALS:
            return
        if ref in EXIT_GLOBALS:
            if not scope["exit"]:
                self.report(where, f"{{{{{ref}}}}} is only set in the exit handler")
            return
        if parts[:2] == ["workflow", "parameters"] and len(parts) == 3:
            if scope.get("external"):
                self.report(where, f"{{{{{ref}}}}} in a template other workflows call by templateRef "
                                   "refers to the caller's arguments; pass an input instead")
            elif parts[2] not in scope["args"]:
                self.report(where, f"{{{{{ref}}}}}: no workflow argument {parts[2]!r}")
            return
        if parts[:3] == ["workflow", "outputs", "parameters"] and len(parts) == 4:
            if parts[3] not in scope["globals"]:
                self.report(where, f"{{{{{ref}}}}}: no output parameter has globalName {parts[3]!r}")
            return
        if parts[:2] == ["inputs", "parameters"] and len(parts) == 3:
            if parts[2] not in inputs:
                self.report(where, f"{{{{{ref}}}}}: the template has no input {parts[2]!r}")
            return
        if parts[0] == "item":
            if not has_item:
                self.report(where, f"{{{{{ref}}}}} outside a withParam/withItems loop")
            return
        if parts[0] in ("tasks", "steps") and len(parts) >= 3:
            known = tasks if parts[0] == "tasks" else earlier_steps
            if known is None or parts[1] not in known:
                self.report(where, f"{{{{{ref}}}}}: no {parts[0][:-1]} {parts[1]!r} in scope here")
                return
            if parts[2] in ("status", "id", "startedAt", "finishedAt", "exitCode", "ip"):
                return
            if parts[2] == "outputs" and len(parts) == 5 and parts[3] == "parameters":
                target = known[parts[1]]
                outputs = {p["name"] for p in _params((target or {}).get("outputs"))}
                if target is not None and parts[4] not in outputs:
                    self.report(where, f"{{{{{ref}}}}}: {parts[0][:-1]} {parts[1]!r} has no output {parts[4]!r}")
                return
        self.report(where, f"{{{{{ref}}}}} is not a reference this pipeline's templates may use")

    def check_metrics(self, tmpl: dict, where: str, scope: dict, inputs: set[str]) -> None:
        """Template metrics see the node's own variables (Argo: duration, status, exitCode, retries,
        resourcesDuration.*) and its outputs, besides what the template sees."""
        outputs = {p["name"] for p in _params(tmpl.get("outputs"))}
        for ref in refs_in(tmpl.get("metrics")):
            parts = ref.split(".")
            if ref in METRIC_VARIABLES or parts[0] == "resourcesDuration" and len(parts) == 2:
                continue
            if parts[:2] == ["outputs", "parameters"] and len(parts) == 3:
                if parts[2] not in outputs:
                    self.report(where, f"{{{{{ref}}}}}: the template has no output {parts[2]!r}")
                continue
            self.check_ref(ref, where, scope, inputs)

    def check_template(self, templates: dict, tmpl: dict, where: str, scope: dict) -> None:
        inputs = {p["name"] for p in _params(tmpl.get("inputs"))}
        body = {k: v for k, v in tmpl.items() if k not in ("dag", "steps", "outputs", "name", "inputs", "metrics")}
        for ref in refs_in(body) + refs_in(_params(tmpl.get("inputs"))):
            self.check_ref(ref, where, scope, inputs)
        self.check_metrics(tmpl, f"{where}.metrics", scope, inputs)
        if "resource" in tmpl and tmpl["resource"].get("manifest"):
            self.check_manifest(tmpl["resource"]["manifest"], where)
        if "dag" in tmpl:
            self.check_dag(templates, tmpl, where, scope, inputs)
        elif "steps" in tmpl:
            self.check_steps(templates, tmpl, where, scope, inputs)
        else:
            for ref in refs_in(tmpl.get("outputs")):
                self.check_ref(ref, f"{where}.outputs", scope, inputs)

    def check_dag(self, templates: dict, tmpl: dict, where: str, scope: dict, inputs: set[str]) -> None:
        tasks = {t["name"]: t for t in tmpl["dag"].get("tasks") or []}
        targets = {}
        for name, task in tasks.items():
            targets[name] = self.resolve(templates, task, f"{where}.tasks.{name}")
        parents = {}
        for name, task in tasks.items():
            deps = list(task.get("dependencies") or []) + re.findall(r"[A-Za-z0-9_-]+(?=\.|\b)",
                                                                     re.sub(r"\.\w+", "", task.get("depends", "")))
            deps = [d for d in deps if d not in ("", "&&", "||")]
            for dep in deps:
                if dep not in tasks:
                    self.report(f"{where}.tasks.{name}", f"depends on unknown task {dep!r}")
            parents[name] = [d for d in deps if d in tasks]

        def ancestors(name: str, seen=None) -> set[str]:
            seen = set() if seen is None else seen
            for p in parents.get(name, []):
                if p not in seen:
                    seen.add(p)
                    ancestors(p, seen)
            return seen

        for name, task in tasks.items():
            here = f"{where}.tasks.{name}"
            if name in ancestors(name):
                self.report(here, "dependency cycle")
                continue
            visible = {a: targets[a] for a in ancestors(name)}
            has_item = bool(task.get("withParam") or task.get("withItems"))
            self.check_loop(task, here)
            for ref in refs_in({k: task.get(k) for k in ("arguments", "when", "withParam", "withItems")}):
                self.check_ref(ref, here, scope, inputs, tasks=visible, has_item=has_item)
            if targets[name] is not None:
                self.check_arguments(targets[name], task.get("arguments"), here, f"template {targets[name]['name']!r}")
            for hook_name, hook in (task.get("hooks") or {}).items():
                hook_where = f"{here}.hooks.{hook_name}"
                hook_target = self.resolve(templates, hook, hook_where)
                for ref in refs_in(hook.get("arguments")):
                    self.check_ref(ref, hook_where, scope, inputs, tasks={**visible, name: targets[name]})
                if hook_target is not None:
                    self.check_arguments(hook_target, hook.get("arguments"), hook_where,
                                         f"template {hook_target['name']!r}")
        for ref in refs_in(tmpl.get("outputs")):
            self.check_ref(ref, f"{where}.outputs", scope, inputs, tasks=targets)

    def check_steps(self, templates: dict, tmpl: dict, where: str, scope: dict, inputs: set[str]) -> None:
        earlier: dict[str, dict | None] = {}
        for i, group in enumerate(tmpl["steps"] or []):
            current = {}
            for step in group:
                here = f"{where}.steps[{i}].{step['name']}"
                target = self.resolve(templates, step, here)
                self.check_loop(step, here)
                has_item = bool(step.get("withParam") or step.get("withItems"))
                for ref in refs_in({k: step.get(k) for k in ("arguments", "when", "withParam", "withItems")}):
                    self.check_ref(ref, here, scope, inputs, earlier_steps=earlier, has_item=has_item)
                if target is not None:
                    self.check_arguments(target, step.get("arguments"), here, f"template {target['name']!r}")
                current[step["name"]] = target
            earlier.update(current)
        for ref in refs_in(tmpl.get("outputs")):
            self.check_ref(ref, f"{where}.outputs", scope, inputs, earlier_steps=earlier)

    def check_loop(self, call: dict, where: str) -> None:
        param = call.get("withParam")
        if param is not None and not re.fullmatch(r"\{\{[^{}]+\}\}", str(param).strip()):
            self.report(where, f"withParam {param!r} is not a single {{{{...}}}} reference")

    def check_template_ref_call(self, name: str, arguments: dict | None, where: str) -> None:
        target = self.wftmpls.get(name)
        if target is None:
            self.report(where, f"workflowTemplateRef: no WorkflowTemplate {name!r}")
            return
        declared = {p["name"]: p for p in _params(target["spec"].get("arguments"))}
        given = {p["name"] for p in _params(arguments)}
        for extra in sorted(given - set(declared)):
            self.report(where, f"argument {extra!r} is not an argument of WorkflowTemplate {name!r}")
        for pname, param in declared.items():
            if _required(param) and pname not in given:
                self.report(where, f"argument {pname!r} of WorkflowTemplate {name!r} is not given")

    def check_manifest(self, text: str, where: str) -> None:
        try:
            child = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            self.report(where, f"resource manifest is not YAML: {exc}")
            return
        if not isinstance(child, dict) or child.get("kind") not in KINDS:
            return
        for problem in schema_problems(child) + cel_problems(child):
            self.report(f"{where}.resource.manifest", problem)
        spec = child.get("spec") or {}
        if spec.get("workflowTemplateRef"):
            self.check_template_ref_call(spec["workflowTemplateRef"].get("name"), spec.get("arguments"),
                                         f"{where}.resource.manifest")


def reference_problems(docs: list[dict]) -> list[str]:
    return References(docs).check()


# --- All of it ---------------------------------------------------------------------------------------------
def validate_documents(docs: list[dict]) -> list[str]:
    """Every problem found in ``docs`` (Argo objects; other kinds, e.g. ConfigMaps, only feed references)."""
    problems = []
    for doc in docs:
        if doc.get("kind") in KINDS:
            problems += _document_problems(json.dumps(doc, sort_keys=True))
    return problems + reference_problems(docs)


@lru_cache(maxsize=256)
def _document_problems(text: str) -> tuple[str, ...]:
    """Schema and CEL problems of one document, cached by content (documents repeat across checks)."""
    doc = json.loads(text)
    label = f"{doc['kind']}/{(doc.get('metadata') or {}).get('name') or '(generated)'}"
    return tuple(f"{label}: {p}" for p in schema_problems(doc) + cel_problems(doc))


def load_documents(paths: list[Path]) -> list[dict]:
    docs = []
    for path in paths:
        docs += [d for d in yaml.safe_load_all(Path(path).read_text()) if isinstance(d, dict)]
    return docs


def validate_paths(paths: list[Path]) -> list[str]:
    return validate_documents(load_documents(paths))

"""Run one manifest of Argo's conformance corpus (../shared/argo-conformance) through the local runner.

The corpus pairs manifests from Argo's repository (v4.1.2) with the outcome Argo's own e2e tests assert;
see its README. ``run_entry`` returns ``("pass" | "refused" | "mismatch", detail)``: a refusal is a
:class:`LocalRunError` naming what the runner does not implement, never a run that ends differently.
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from orca_workflows.localrun import LocalRunError, LocalRunner

# ../shared beside the repository, as the developers and CI have it.
CORPUS_DIR = Path(os.environ.get("ORCA_ARGO_CONFORMANCE",
                                 Path(__file__).resolve().parents[3] / "shared" / "argo-conformance"))


def corpus_entries() -> list[dict]:
    path = CORPUS_DIR / "corpus.json"
    return json.loads(path.read_text())["manifests"] if path.is_file() else []


def _selected(nodes: list, wf, select: dict) -> list:
    if select.get("any"):
        return nodes
    if select.get("root"):
        return [n for n in nodes if n.name == wf.name]
    if select.get("isExitNode"):
        return [n for n in nodes if n.display_name.endswith(".onExit")]
    for key, attr in (("displayName", "display_name"), ("name", "name"), ("type", "type")):
        if key in select:
            want = select[key].replace("WORKFLOW", wf.name) if key == "name" else select[key]
            return [n for n in nodes if getattr(n, attr) == want]
    if "nameContains" in select:
        return [n for n in nodes if select["nameContains"] in n.name]
    raise AssertionError(f"unknown selector {select}")


def _node_problem(node, expect: dict, children: dict) -> str | None:
    """Why ``node`` does not meet ``expect`` (hard checks only), or None."""
    if "phase" in expect and node.phase != expect["phase"]:
        return f"phase {node.phase} != {expect['phase']}"
    if "type" in expect and node.type != expect["type"]:
        return f"type {node.type} != {expect['type']}"
    if "type_not" in expect and node.type == expect["type_not"]:
        return f"type is {node.type}"
    if "children_count" in expect and len(children[node.id]) != expect["children_count"]:
        return f"{len(children[node.id])} children != {expect['children_count']}"
    inputs = [p["value"] for p in (node.inputs or {}).get("parameters") or []]
    if "input_values" in expect and inputs != expect["input_values"]:
        return f"inputs {inputs} != {expect['input_values']}"
    if "input_count" in expect and len(inputs) != expect["input_count"]:
        return f"{len(inputs)} inputs != {expect['input_count']}"
    outputs = [p["value"] for p in (node.outputs or {}).get("parameters") or []]
    if "output_values" in expect and outputs != expect["output_values"]:
        return f"outputs {outputs} != {expect['output_values']}"
    if "stdout" in expect:
        text = Path(node.logs["stdout"]).read_text() if node.logs else ""
        if expect["stdout"] not in text:
            return f"stdout {text!r} lacks {expect['stdout']!r}"
    return None


def check(wf, expect: dict) -> list[str]:
    """Every hard expectation of a corpus entry that the finished workflow misses."""
    problems = []
    nodes = list(wf.nodes.values())
    children = {n.id: n.children for n in nodes}
    if expect.get("workflow_phase") and wf.phase != expect["workflow_phase"]:
        problems.append(f"workflow phase {wf.phase} ({wf.message}) != {expect['workflow_phase']}")
    count = expect.get("node_count") or {}
    if "equals" in count and len(nodes) != count["equals"]:
        problems.append(f"{len(nodes)} nodes != {count['equals']}: {sorted(n.name for n in nodes)}")
    if "at_most" in count and len(nodes) > count["at_most"]:
        problems.append(f"{len(nodes)} nodes > {count['at_most']}")
    for item in expect.get("nodes") or []:
        chosen = _selected(nodes, wf, item["select"])
        found = [_node_problem(n, item["expect"], children) for n in chosen]
        if not chosen:
            problems.append(f"no node matches {item['select']}")
        elif item.get("mode", "all") == "exists" and None not in found:
            problems.append(f"no node of {item['select']} meets {item['expect']}: {found}")
        elif item.get("mode", "all") == "all" and any(found):
            problems.append(f"{item['select']}: {[f for f in found if f]}")
    for item in expect.get("exclusive") or []:
        names = set(item.get("templates") or [item["template"]])
        spans = sorted((n.started_at, n.finished_at) for n in nodes if n.type == "Pod" and n.template in names)
        if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
            problems.append(f"pods of {sorted(names)} overlapped: {spans}")
    return problems


def run_entry(entry: dict, out_dir: Path) -> tuple[str, str]:
    """Run one corpus entry; the caller puts the corpus's bin/ first on PATH."""
    extra = [CORPUS_DIR / f["path"] for f in entry["extra_files"]]
    if not extra:
        empty = out_dir / "no-templates.yaml"
        empty.parent.mkdir(parents=True, exist_ok=True)
        empty.write_text("")
        extra = [empty]
    submit = entry["submit"]
    try:
        if "from" in submit:
            runner = LocalRunner([CORPUS_DIR / entry["manifest"], *extra], out_dir / "run")
            wf = runner.submit(submit["from"])
        else:
            runner = LocalRunner(extra, out_dir / "run")
            wf = runner.submit(str(CORPUS_DIR / submit["file"]))
        timer = threading.Timer(entry["timeout_s"], runner.terminate)
        timer.start()
        try:
            runner.wait()
        finally:
            timer.cancel()
    except LocalRunError as exc:
        return "refused", str(exc)
    problems = check(wf, entry["expect"])
    return ("mismatch", "; ".join(problems)) if problems else ("pass", wf.phase)

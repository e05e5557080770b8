"""DAG rules, as Argo applies them: ``depends``/``dependencies`` logic, ancestry, and the DAG's phase."""
from __future__ import annotations

import re

from . import exprlang
from .errors import LocalRunError
from .nodes import Node

_DEP_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|([A-Za-z0-9_][A-Za-z0-9_-]*)(?:\.([A-Za-z]+))?)")
RESULTS = ("Succeeded", "Failed", "Errored", "Skipped", "Omitted", "Daemoned", "AnySucceeded", "AllFailed")


def _continue_on(task: dict) -> dict:
    return task.get("continueOn") or {}


def depends_logic(task: dict, tasks: dict[str, dict]) -> tuple[list[str], str]:
    """(names of the tasks it depends on, the expanded boolean logic); ('', []) for a root task."""
    where = f"dag task {task['name']}"
    if task.get("depends") and task.get("dependencies"):
        raise LocalRunError(f"{where}: 'depends' and 'dependencies' cannot both be set")
    text = task.get("depends") or " && ".join(task.get("dependencies") or [])
    if not text.strip():
        return [], ""
    out, names, pos = [], [], 0
    while pos < len(text):
        m = _DEP_TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise LocalRunError(f"{where}: cannot parse depends {text!r} at {text[pos:]!r}")
        pos = m.end()
        if m.group(1):
            out.append(m.group(1))
            continue
        name, result = m.group(2), m.group(3)
        if name not in tasks:
            raise LocalRunError(f"{where}: depends on unknown task {name!r}")
        if name not in names:
            names.append(name)
        var = name.replace("-", "_")
        if result:
            if result not in RESULTS:
                raise LocalRunError(f"{where}: unknown task result .{result} in depends {text!r}")
            out.append(f"{var}.{result}")
        else:
            alts = [f"{var}.Succeeded", f"{var}.Skipped", f"{var}.Daemoned"]
            if _continue_on(tasks[name]).get("error"):
                alts.append(f"{var}.Errored")
            if _continue_on(tasks[name]).get("failed"):
                alts.append(f"{var}.Failed")
            out.append("(" + " || ".join(alts) + ")")
    return names, " ".join(out)


def task_results(node: Node, children: list[Node]) -> dict[str, bool]:
    any_ok = any(c.phase == "Succeeded" for c in children)
    all_failed = bool(children) and all(c.phase == "Failed" for c in children)
    return {"Succeeded": node.phase == "Succeeded", "Failed": node.phase == "Failed",
            "Errored": node.phase == "Error", "Skipped": node.phase == "Skipped",
            "Omitted": node.phase == "Omitted", "Daemoned": False,
            "AnySucceeded": any_ok, "AllFailed": all_failed}


def evaluate_depends(logic: str, results: dict[str, dict[str, bool]]) -> bool:
    env = {name.replace("-", "_"): r for name, r in results.items()}
    return exprlang.evaluate_bool(logic, env)


def ancestors(name: str, deps: dict[str, list[str]]) -> list[str]:
    seen, stack = [], list(deps[name])
    while stack:
        d = stack.pop()
        if d not in seen:
            seen.append(d)
            stack.extend(deps[d])
    return seen


def leaf_tasks(tasks: dict[str, dict], deps: dict[str, list[str]]) -> list[str]:
    used = {d for ds in deps.values() for d in ds}
    return sorted(n for n in tasks if n not in used)


def dag_phase(targets: list[str], tasks: dict[str, dict], deps: dict[str, list[str]],
              nodes: dict[str, Node], fail_fast: bool = True) -> str:
    """Argo's assessDAGPhase: a target that did not run inherits its ancestors' phase, failures first;
    a failed target whose continueOn covers that failure does not fail the DAG."""
    branch: dict[str, str] = {}

    def branch_phase(name: str) -> str:
        if name in branch:
            return branch[name]
        node = nodes.get(name)
        if node is not None and node.completed:
            phase = node.phase
        else:
            parents = [branch_phase(d) for d in deps[name]]
            bad = [p for p in parents if p in ("Failed", "Error")]
            phase = bad[0] if bad else "Succeeded"
        branch[name] = phase
        return phase

    result = "Succeeded"
    for target in targets:
        phase = branch_phase(target)
        if phase in ("Failed", "Error"):
            cont = _continue_on(tasks[target])
            if (phase == "Failed" and cont.get("failed")) or (phase == "Error" and cont.get("error")):
                continue
            result = phase
            if fail_fast:
                break
    return result

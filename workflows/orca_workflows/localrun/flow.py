"""DAG and steps templates: dependencies, loops (withItems/withParam/withSequence), ``when``, exit hooks,
and the outputs of a DAG or steps template. Mixed into :class:`~.engine.WorkflowRun`."""
from __future__ import annotations

import dataclasses
import json
import threading

from . import dag as dagrules
from . import exprlang, govaluate
from .context import Ctx, NodeError, SlotToken
from .errors import ExpressionError, Unsupported
from .locks import Slots
from .nodes import Node, loop_variables, node_variables
from .spec import int_value, param_string
from .templating import expression_env, refuse_absent_optional, substitute, substitute_tree


class FlowMixin:
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
        child_ctx = Ctx(ctx.tscope, node.id, ctx.cancel, ctx.extra, slots, ctx.depth)
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
            # dag.go:378 marks a failed DAG without a message: a failed DAG root leaves the workflow's
            # status.message empty (operator.go:545)
            self.set_phase(node, phase)
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
            self.set_phase(group, bad[-1].phase if bad else "Succeeded")   # dag.go:715: no message
        return group

    def _run_item(self, parent: Node, name: str, display: str, task: dict, scope: dict, ctx: Ctx,
                  token: SlotToken | None, index: int | None, kind: str) -> Node:
        where = f"{self.name}/{name}"
        # steps.go:458-492, dag.go:785-822 (v4.1.2): ``when`` is resolved and judged first; a task that
        # will not run is skipped without resolving the rest (its arguments may name a skipped task's outputs)
        try:
            when = substitute(task["when"], scope, f"{where}.when") if task.get("when") else ""
            go = govaluate.evaluate_when(when)
            args = [] if not go else [
                {**a, "value": substitute(param_string(a["value"], where), scope, f"{where}.arguments.{a['name']}")}
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
        # exit_handler.go:23: exit hooks run under a Stop (ShouldExecute(true)); only termination stops them
        hook_ctx = dataclasses.replace(ctx, cancel=self.exit_cancel)
        return self.execute(f"{node.name}.onExit", f"{node.display_name}.onExit", holder, args, hook_ctx, node, None)

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
        child_ctx = Ctx(ctx.tscope, node.id, ctx.cancel, ctx.extra, slots, ctx.depth)
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
            # steps.go executeStepGroup judges every expanded child on its own phase: continueOn.failed
            # does not cover an Error child.
            failed = [(s, n) for s in group_steps for n in (groups.get(s["name"]) or [done[s["name"]]])
                      if n.failed_or_error and not _continues(s, n.phase)]
            for s in group_steps:
                step_scope.update(self._task_variables(f"steps.{s['name']}", done[s["name"]], groups.get(s["name"])))
            if failed:   # steps.go:374 names the child by its node ID; steps.go:127 passes it up
                message = f"child '{failed[0][1].id}' failed"
                self.set_phase(gnode, "Failed", message)
                phase = "Failed"
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
                    refuse_absent_optional(vf["expression"], scope, where)
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



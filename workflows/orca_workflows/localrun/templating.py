"""``{{...}}`` substitution as Argo does it.

A scope is a flat dict of dotted names to strings (``inputs.parameters.ms``, ``tasks.discover.outputs.result``,
``item``), the same map Argo builds. ``{{name}}`` looks the name up; ``{{=expr}}`` evaluates expr-lang over
the scope turned into nested maps. A name that is not in scope raises :class:`ResolveError`.
"""
from __future__ import annotations

import json
import re
from typing import Any

from . import exprlang
from .errors import ExpressionError, ResolveError, Unsupported

_TAG_RE = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# Scope value of ``tasks.X.outputs`` / ``steps.X.outputs`` when X was Skipped or Omitted.
SKIPPED_OUTPUTS = "__skipped-node-outputs__"


def refuse_absent_optional(text: str, scope: dict[str, Any], where: str) -> None:
    """Argo v4 gives a skipped or omitted node's outputs as "absent optionals" (the producer's
    valueFrom.default, else the consumer's input default, else ``nil`` in expressions, else an error;
    util/template/simple_template.go). The runner does not implement that, so it refuses such a reference."""
    for key, value in scope.items():
        if value is SKIPPED_OUTPUTS and key in text:
            raise Unsupported(f"{where}: {key}", "a reference to the outputs of a skipped or omitted node "
                              "(Argo v4's absent-optional fallbacks)")


def expression_env(scope: dict[str, Any]) -> dict:
    """Nested maps from dotted names: {'inputs.parameters.x': 'v'} -> {'inputs': {'parameters': {'x': 'v'}}}."""
    env: dict = {}
    for key in sorted(scope, key=lambda k: k.count(".")):
        value = scope[key]
        if value is SKIPPED_OUTPUTS:
            continue
        parts = key.split(".")
        node = env
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        if not isinstance(node.get(parts[-1]), dict):
            node[parts[-1]] = value
    if "item" in scope and isinstance(scope["item"], str):
        try:
            env["item"] = json.loads(scope["item"]) if scope["item"][:1] in "[{" else env["item"]
        except json.JSONDecodeError:
            pass
    return env


def substitute(text: str, scope: dict[str, Any], where: str = "") -> str:
    """Replace every tag in ``text``; raise ResolveError naming the first tag that cannot be resolved."""
    if "{{" not in text:
        return text
    env = None

    def repl(m: re.Match) -> str:
        nonlocal env
        tag = m.group(1).strip()
        if tag.startswith("="):
            refuse_absent_optional(tag, scope, where)
            if env is None:
                env = expression_env(scope)
            try:
                value = exprlang.evaluate(tag[1:], env)
            except ExpressionError as exc:
                raise ExpressionError(f"{where}: {{{{{tag}}}}}: {exc}" if where else str(exc)) from None
            if value is None:
                raise ResolveError(f"{where}: {{{{{tag}}}}} evaluated to nil (a missing name?)")
            return exprlang.format_value(value)
        if tag not in scope:
            refuse_absent_optional(tag, scope, where)
            raise ResolveError(f"{where + ': ' if where else ''}failed to resolve {{{{{tag}}}}}")
        value = scope[tag]
        return value if isinstance(value, str) else exprlang.format_value(value)

    return _TAG_RE.sub(repl, text)


def substitute_tree(value: Any, scope: dict[str, Any], where: str = "") -> Any:
    """Substitute every string inside nested dicts and lists (keys too, as Argo substitutes the JSON text)."""
    if isinstance(value, str):
        return substitute(value, scope, where)
    if isinstance(value, list):
        return [substitute_tree(v, scope, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        return {substitute(k, scope, where): substitute_tree(v, scope, f"{where}.{k}" if where else k)
                for k, v in value.items()}
    return value


def has_tags(value: Any) -> bool:
    return "{{" in json.dumps(value)

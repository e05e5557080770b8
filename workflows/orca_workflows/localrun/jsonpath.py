"""The kubectl JSONPath subset used to read a child workflow's fields: ``{.status.phase}``,
``{.metadata.name}``, ``{.status.outputs.parameters[0].value}`` and filters such as
``{.status.outputs.parameters[?(@.name=="archive")].value}``. Anything else fails loudly."""
from __future__ import annotations

import re

from .errors import ExpressionError, Unsupported

_STEP_RE = re.compile(r"""\.(?P<key>[A-Za-z0-9_-]+)
                        | \[(?P<index>-?\d+)\]
                        | \[\?\(@\.(?P<fkey>[A-Za-z0-9_-]+)\s*==\s*(?P<q>["'])(?P<fval>[^"']*)(?P=q)\)\]""", re.VERBOSE)


def jsonpath_get(data, path: str):
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1]
    if text.startswith("$"):
        text = text[1:]
    pos, value, filtered = 0, data, False
    while pos < len(text):
        m = _STEP_RE.match(text, pos)
        if not m:
            raise Unsupported(f"JSONPath {path!r}", f"syntax at {text[pos:]!r}")
        pos = m.end()
        if m.group("key") is not None:
            key = m.group("key")
            if filtered:
                value = [v.get(key) for v in value if isinstance(v, dict) and key in v]
            elif isinstance(value, dict) and key in value:
                value = value[key]
            else:
                raise ExpressionError(f"JSONPath {path!r}: no field {key!r}")
        elif m.group("index") is not None:
            idx = int(m.group("index"))
            if not isinstance(value, list) or not -len(value) <= idx < len(value):
                raise ExpressionError(f"JSONPath {path!r}: index {idx} out of range")
            value = value[idx]
        else:
            if not isinstance(value, list):
                raise ExpressionError(f"JSONPath {path!r}: filter applied to a non-list")
            value = [v for v in value if isinstance(v, dict) and str(v.get(m.group("fkey"))) == m.group("fval")]
            filtered = True
    if filtered:
        if len(value) != 1:
            raise ExpressionError(f"JSONPath {path!r}: filter matched {len(value)} items, expected one")
        value = value[0]
    return value

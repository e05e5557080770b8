"""The part of expr-lang (github.com/expr-lang/expr) that Argo exposes and our YAML may use.

Argo evaluates ``{{=expr}}`` tags, DAG ``depends`` logic and ``retryStrategy.expression`` with expr-lang.
This is a small Pratt parser over the same grammar: literals, names, member access, indexing, calls,
unary and binary operators, ``in``, ternary and ``??``, array and map literals, and the predicate
builtins (``filter``, ``map``, ``all``, ``any``, ``none``, ``count``) with ``#``. A function, operator or
construct outside this set raises :class:`ExpressionError` naming it: never a silent guess.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Callable

from .errors import ExpressionError, Unsupported

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<num>\d+\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|0[xX][0-9a-fA-F]+|\d+)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
  | (?P<op>\?\?|\?\.|\.\.|==|!=|<=|>=|&&|\|\||\*\*|[-+*/%^!<>?:.,()\[\]{}#|])
""", re.VERBOSE)

_WORD_OPS = {"and": "&&", "or": "||", "not": "!"}
_KEYWORDS = {"in", "matches", "contains", "startsWith", "endsWith"}


@dataclass
class Tok:
    kind: str  # num, str, name, op, end
    value: Any
    pos: int


def tokenize(text: str) -> list[Tok]:
    toks, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m:
            raise ExpressionError(f"unexpected character {text[pos]!r} at {pos} in expression {text!r}")
        kind = m.lastgroup
        raw = m.group(kind)
        if kind == "num":
            value = int(raw, 16) if raw[:2].lower() == "0x" else (float(raw) if any(c in raw for c in ".eE") else int(raw))
            toks.append(Tok("num", value, pos))
        elif kind == "str":
            if raw[0] == "`":
                toks.append(Tok("str", raw[1:-1], pos))
            else:
                body = raw[1:-1]
                if raw[0] == "'":
                    body = body.replace("\\'", "'").replace('"', '\\"')
                try:
                    toks.append(Tok("str", json.loads(f'"{body}"'), pos))
                except json.JSONDecodeError as exc:
                    raise ExpressionError(f"bad string literal {raw} in expression {text!r}") from exc
        elif kind == "name":
            if raw in _WORD_OPS:
                toks.append(Tok("op", _WORD_OPS[raw], pos))
            else:
                toks.append(Tok("name", raw, pos))
        elif kind == "op":
            toks.append(Tok("op", raw, pos))
        pos = m.end()
    toks.append(Tok("end", None, pos))
    return toks


# --- AST: tuples (kind, ...) -------------------------------------------------------------------------
_BINARY_PREC = {
    "??": 1, "||": 2, "&&": 3,
    "==": 4, "!=": 4, "<": 4, ">": 4, "<=": 4, ">=": 4,
    "in": 4, "not in": 4, "matches": 4, "contains": 4, "startsWith": 4, "endsWith": 4,
    "..": 5, "+": 6, "-": 6, "*": 7, "/": 7, "%": 7, "**": 8, "^": 8,
}
_RIGHT_ASSOC = {"**", "^"}
_PREDICATE_FUNCS = {"filter", "map", "all", "any", "none", "one", "count", "find", "findIndex"}


class Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self, offset: int = 0) -> Tok:
        return self.toks[min(self.i + offset, len(self.toks) - 1)]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def expect(self, op: str) -> None:
        tok = self.next()
        if tok.kind != "op" or tok.value != op:
            raise ExpressionError(f"expected {op!r} at {tok.pos} in expression {self.text!r}")

    def parse(self):
        node = self.ternary()
        if self.peek().kind != "end":
            raise ExpressionError(f"unexpected {self.peek().value!r} at {self.peek().pos} in expression {self.text!r}")
        return node

    def ternary(self):
        cond = self.binary(0)
        tok = self.peek()
        if tok.kind == "op" and tok.value == "?":
            self.next()
            a = self.ternary()
            self.expect(":")
            b = self.ternary()
            return ("if", cond, a, b)
        if tok.kind == "op" and tok.value == "|":
            raise Unsupported("expression operator '|'", self.text)
        return cond

    def _binary_op(self) -> str | None:
        tok = self.peek()
        if tok.kind == "op" and tok.value in _BINARY_PREC:
            return tok.value
        if tok.kind == "name" and tok.value in _KEYWORDS:
            return tok.value
        if tok.kind == "op" and tok.value == "!" and self.peek(1).kind == "name" and self.peek(1).value == "in":
            return "not in"
        return None

    def binary(self, min_prec: int):
        left = self.unary()
        while True:
            op = self._binary_op()
            if op is None or _BINARY_PREC[op] < min_prec:
                return left
            self.next()
            if op == "not in":
                self.next()
            prec = _BINARY_PREC[op]
            right = self.binary(prec if op in _RIGHT_ASSOC else prec + 1)
            left = ("bin", op, left, right)

    def unary(self):
        tok = self.peek()
        if tok.kind == "op" and tok.value in ("!", "-", "+"):
            self.next()
            return ("unary", tok.value, self.unary())
        return self.postfix(self.primary())

    def primary(self):
        tok = self.next()
        if tok.kind in ("num", "str"):
            return ("lit", tok.value)
        if tok.kind == "name":
            if tok.value in ("true", "false"):
                return ("lit", tok.value == "true")
            if tok.value == "nil":
                return ("lit", None)
            if self.peek().kind == "op" and self.peek().value == "(":
                return self.call(tok.value)
            return ("name", tok.value)
        if tok.kind == "op":
            if tok.value == "(":
                node = self.ternary()
                self.expect(")")
                return node
            if tok.value == "[":
                items = self.sequence("]")
                return ("list", items)
            if tok.value == "{":
                return self.map_literal()
            if tok.value == "#":
                return ("pointer",)
        raise ExpressionError(f"unexpected {tok.value!r} at {tok.pos} in expression {self.text!r}")

    def sequence(self, close: str) -> list:
        items = []
        while not (self.peek().kind == "op" and self.peek().value == close):
            items.append(self.ternary())
            if self.peek().kind == "op" and self.peek().value == ",":
                self.next()
        self.expect(close)
        return items

    def map_literal(self):
        pairs = []
        while not (self.peek().kind == "op" and self.peek().value == "}"):
            key_tok = self.next()
            if key_tok.kind not in ("name", "str", "num"):
                raise ExpressionError(f"bad map key at {key_tok.pos} in expression {self.text!r}")
            self.expect(":")
            pairs.append((key_tok.value, self.ternary()))
            if self.peek().kind == "op" and self.peek().value == ",":
                self.next()
        self.expect("}")
        return ("map", pairs)

    def call(self, name: str):
        self.expect("(")
        args = self.sequence(")")
        return ("call", name, args)

    def postfix(self, node):
        while True:
            tok = self.peek()
            if tok.kind == "op" and tok.value in (".", "?."):
                self.next()
                member = self.next()
                if member.kind != "name":
                    raise ExpressionError(f"expected a name after '.' at {member.pos} in expression {self.text!r}")
                if self.peek().kind == "op" and self.peek().value == "(":
                    if node[0] == "name":  # namespaced function, e.g. sprig.trim(x)
                        node = self.call(f"{node[1]}.{member.value}")
                        continue
                    raise Unsupported(f"expression method call .{member.value}()", self.text)
                node = ("member", node, member.value, tok.value == "?.")
            elif tok.kind == "op" and tok.value == "[":
                self.next()
                if self.peek().kind == "op" and self.peek().value == ":":
                    raise Unsupported("expression slice [a:b]", self.text)
                index = self.ternary()
                if self.peek().kind == "op" and self.peek().value == ":":
                    raise Unsupported("expression slice [a:b]", self.text)
                self.expect("]")
                node = ("index", node, index)
            else:
                return node


# --- Evaluation ----------------------------------------------------------------------------------------
def _num(v, what: str):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ExpressionError(f"{what}: expected a number, got {type(v).__name__} {v!r}")
    return v


def _as_int(v):
    if isinstance(v, bool):
        raise ExpressionError(f"asInt: cannot convert bool {v!r}")
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v)
    try:
        return int(str(v).strip())
    except ValueError as exc:
        raise ExpressionError(f"asInt: {v!r} is not an integer") from exc


def _as_float(v):
    try:
        return float(v)
    except (TypeError, ValueError) as exc:
        raise ExpressionError(f"asFloat: {v!r} is not a number") from exc


def to_json(value) -> str:
    """Go's json.Marshal output: compact, map keys sorted."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _from_json(text):
    try:
        return json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ExpressionError(f"fromJSON: not valid JSON: {str(text)[:80]!r}") from exc


def _jsonpath(text, path):
    from .jsonpath import jsonpath_get
    data = _from_json(text) if isinstance(text, str) else text
    return jsonpath_get(data, path)


def _string(v):
    return format_value(v)


FUNCTIONS: dict[str, Callable] = {
    "asInt": _as_int, "asFloat": _as_float, "int": _as_int, "float": _as_float, "string": _string,
    "toJSON": to_json, "toJson": to_json, "fromJSON": _from_json, "fromJson": _from_json,
    "jsonpath": _jsonpath, "len": len,
    "lower": lambda s: s.lower(), "upper": lambda s: s.upper(),
    "trim": lambda s, chars=None: s.strip(chars), "split": lambda s, sep: s.split(sep),
    "join": lambda items, sep="": sep.join(items), "replace": lambda s, old, new: s.replace(old, new),
    "hasPrefix": lambda s, p: s.startswith(p), "hasSuffix": lambda s, p: s.endswith(p),
    "indexOf": lambda s, sub: s.find(sub), "keys": lambda m: list(m.keys()), "values": lambda m: list(m.values()),
    "first": lambda xs: xs[0] if xs else None, "last": lambda xs: xs[-1] if xs else None,
    "abs": lambda x: abs(_num(x, "abs")), "max": lambda *xs: max(xs[0] if len(xs) == 1 else xs),
    "min": lambda *xs: min(xs[0] if len(xs) == 1 else xs), "ceil": math.ceil, "floor": math.floor,
    "round": round,
    # Sprig functions Argo exposes under ``sprig.``: the few with an obvious meaning.
    "sprig.trim": lambda s: s.strip(), "sprig.upper": lambda s: s.upper(), "sprig.lower": lambda s: s.lower(),
    "sprig.toString": _string, "sprig.int": _as_int, "sprig.float64": _as_float,
    "sprig.replace": lambda old, new, s: s.replace(old, new), "sprig.fromJson": _from_json,
    "sprig.toJson": to_json, "sprig.splitList": lambda sep, s: s.split(sep), "sprig.join": lambda sep, xs: sep.join(map(str, xs)),
}


def format_value(value) -> str:
    """How Argo writes an expression result into a template: strings raw, everything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if value is None:
        return "null"
    if isinstance(value, int):
        return str(value)
    return to_json(value)


class Evaluator:
    def __init__(self, env: dict, text: str):
        self.env = env
        self.text = text

    def eval(self, node, pointer=None):
        kind = node[0]
        if kind == "lit":
            return node[1]
        if kind == "name":
            if node[1] not in self.env:
                raise ExpressionError(f"unknown name {node[1]!r} in expression {self.text!r}")
            return self.env[node[1]]
        if kind == "pointer":
            if pointer is None:
                raise ExpressionError(f"'#' outside a predicate in expression {self.text!r}")
            return pointer[0]
        if kind == "member":
            base = self.eval(node[1], pointer)
            return self._get(base, node[2], optional=node[3])
        if kind == "index":
            base = self.eval(node[1], pointer)
            return self._get(base, self.eval(node[2], pointer), optional=False)
        if kind == "list":
            return [self.eval(n, pointer) for n in node[1]]
        if kind == "map":
            return {k: self.eval(v, pointer) for k, v in node[1]}
        if kind == "unary":
            value = self.eval(node[2], pointer)
            if node[1] == "!":
                if not isinstance(value, bool):
                    raise ExpressionError(f"'!' needs a bool, got {value!r} in {self.text!r}")
                return not value
            return -_num(value, "unary minus") if node[1] == "-" else _num(value, "unary plus")
        if kind == "if":
            cond = self.eval(node[1], pointer)
            if not isinstance(cond, bool):
                raise ExpressionError(f"ternary condition is not a bool ({cond!r}) in {self.text!r}")
            return self.eval(node[2] if cond else node[3], pointer)
        if kind == "bin":
            return self._binary(node, pointer)
        if kind == "call":
            return self._call(node, pointer)
        raise ExpressionError(f"cannot evaluate {kind} in {self.text!r}")

    def _get(self, base, key, optional: bool):
        if base is None:
            if optional:
                return None
            raise ExpressionError(f"cannot read {key!r} of nil in expression {self.text!r}")
        if isinstance(base, dict):
            return base.get(key)
        if isinstance(base, (list, str)) and isinstance(key, int) and not isinstance(key, bool):
            if -len(base) <= key < len(base):
                return base[key]
            raise ExpressionError(f"index {key} out of range in expression {self.text!r}")
        raise ExpressionError(f"cannot read {key!r} of {type(base).__name__} in expression {self.text!r}")

    def _binary(self, node, pointer):
        op = node[1]
        if op == "&&" or op == "||":
            left = self.eval(node[2], pointer)
            if not isinstance(left, bool):
                raise ExpressionError(f"{op} needs bools, got {left!r} in {self.text!r}")
            if (op == "&&" and not left) or (op == "||" and left):
                return left
            right = self.eval(node[3], pointer)
            if not isinstance(right, bool):
                raise ExpressionError(f"{op} needs bools, got {right!r} in {self.text!r}")
            return right
        if op == "??":
            left = self.eval(node[2], pointer)
            return left if left is not None else self.eval(node[3], pointer)
        a, b = self.eval(node[2], pointer), self.eval(node[3], pointer)
        if op == "==":
            return a == b and type(a) is type(b) or (_is_num(a) and _is_num(b) and a == b)
        if op == "!=":
            return not (a == b and type(a) is type(b) or (_is_num(a) and _is_num(b) and a == b))
        if op in ("<", ">", "<=", ">="):
            if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
                raise ExpressionError(f"cannot compare {a!r} {op} {b!r} in {self.text!r}")
            return {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op]
        if op in ("in", "not in"):
            if isinstance(b, dict):
                found = a in b
            elif isinstance(b, list):
                found = a in b
            else:
                raise ExpressionError(f"'in' needs an array or map on the right, got {b!r} in {self.text!r}")
            return found if op == "in" else not found
        if op in ("matches", "contains", "startsWith", "endsWith"):
            if not (isinstance(a, str) and isinstance(b, str)):
                raise ExpressionError(f"{op} needs strings in {self.text!r}")
            return {"matches": lambda: re.search(b, a) is not None, "contains": lambda: b in a,
                    "startsWith": lambda: a.startswith(b), "endsWith": lambda: a.endswith(b)}[op]()
        if op == "+":
            if isinstance(a, str) and isinstance(b, str):
                return a + b
            if isinstance(a, list) and isinstance(b, list):
                return a + b
            return _num(a, "+") + _num(b, "+")
        if op == "..":
            return list(range(_as_int(a), _as_int(b) + 1))
        a, b = _num(a, op), _num(b, op)
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "%":
            return a % b
        return a ** b

    def _call(self, node, pointer):
        name, args = node[1], node[2]
        if name in _PREDICATE_FUNCS:
            if len(args) != 2:
                raise ExpressionError(f"{name} takes an array and a predicate in {self.text!r}")
            items = self.eval(args[0], pointer)
            if not isinstance(items, list):
                raise ExpressionError(f"{name} needs an array, got {items!r} in {self.text!r}")
            values = [self.eval(args[1], (item,)) for item in items]
            if name == "map":
                return values
            flags = [bool(v) for v in values]
            if name == "filter":
                return [item for item, keep in zip(items, flags) if keep]
            if name == "find":
                return next((item for item, keep in zip(items, flags) if keep), None)
            if name == "findIndex":
                return next((i for i, keep in enumerate(flags) if keep), -1)
            return {"all": all(flags), "any": any(flags), "none": not any(flags),
                    "one": sum(flags) == 1, "count": sum(flags)}[name]
        if name not in FUNCTIONS:
            raise Unsupported(f"expression function {name}()", self.text)
        values = [self.eval(a, pointer) for a in args]
        try:
            return FUNCTIONS[name](*values)
        except ExpressionError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise ExpressionError(f"{name}() failed in {self.text!r}: {exc}") from exc


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def evaluate(text: str, env: dict) -> Any:
    """Evaluate one expr-lang expression against ``env`` (nested dicts of strings, lists, numbers).

    Text this small parser cannot read is refused, never reported as an Argo error: expr-lang may well
    accept it (closures, pipes, sprig, ...)."""
    try:
        tree = Parser(text).parse()
    except Unsupported:
        raise
    except ExpressionError as exc:
        raise Unsupported("expression syntax", str(exc)) from None
    return Evaluator(env, text).eval(tree)


def evaluate_bool(text: str, env: dict) -> bool:
    value = evaluate(text, env)
    if not isinstance(value, bool):
        raise ExpressionError(f"expression {text!r} gave {value!r}, not a bool")
    return value

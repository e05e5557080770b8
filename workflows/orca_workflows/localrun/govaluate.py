"""``when`` conditions, evaluated as Argo does: govaluate over the already substituted text.

Argo turns every govaluate *variable* token into a string literal, so ``Failed != Succeeded`` compares
two strings. We follow govaluate's lexer closely (a token starting with a digit is a number, a name may
hold letters, digits, ``_`` and ``.``) so that a condition that breaks on a cluster breaks here too,
e.g. an unquoted ``73MHz`` or ``2025-06-15``: quote such values in templates.
"""
from __future__ import annotations

import re

from .errors import ExpressionError

_OPS = ("==", "!=", ">=", "<=", "=~", "!~", "&&", "||", "**", "??", ">", "<", "+", "-", "*", "/", "%",
        "!", "?", ":", "(", ")", ",")


def _tokens(text: str) -> list[tuple[str, object]]:
    out, i = [], 0
    while i < len(text):
        c = text[i]
        if c.isspace():
            i += 1
        elif c.isdigit():
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] == "."):
                j += 1
            raw = text[i:j]
            try:
                out.append(("num", float(raw)))
            except ValueError as exc:
                raise ExpressionError(f"invalid number {raw!r} in when {text!r}") from exc
            i = j
        elif c in "'\"":
            j = text.find(c, i + 1)
            if j < 0:
                raise ExpressionError(f"unclosed string in when {text!r}")
            out.append(("str", text[i + 1:j]))
            i = j + 1
        elif c.isalpha() or c == "_":
            j = i
            while j < len(text) and (text[j].isalnum() or text[j] in "_."):
                j += 1
            word = text[i:j]
            if word in ("true", "false"):
                out.append(("bool", word == "true"))
            elif word in ("in", "IN"):
                out.append(("op", "in"))
            else:
                out.append(("str", word))  # Argo: govaluate variables become strings
            i = j
        elif c == "[":
            j = text.find("]", i)
            if j < 0:
                raise ExpressionError(f"unclosed '[' in when {text!r}")
            out.append(("str", text[i + 1:j]))
            i = j + 1
        else:
            for op in _OPS:
                if text.startswith(op, i):
                    out.append(("op", op))
                    i += len(op)
                    break
            else:
                raise ExpressionError(f"invalid token {c!r} in when {text!r} (hint: quote the value)")
    return out


_PREC = {"??": 1, "||": 2, "&&": 3, "==": 4, "!=": 4, ">": 4, "<": 4, ">=": 4, "<=": 4, "=~": 4, "!~": 4,
         "in": 4, "+": 5, "-": 5, "*": 6, "/": 6, "%": 6, "**": 7}


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    def peek(self):
        return self.toks[self.i] if self.i < len(self.toks) else ("end", None)

    def take(self):
        tok = self.peek()
        self.i += 1
        return tok

    def fail(self, what: str):
        raise ExpressionError(f"invalid when {self.text!r}: {what}")

    def parse(self):
        value = self.ternary()
        if self.peek()[0] != "end":
            self.fail(f"unexpected {self.peek()[1]!r}")
        return value

    def ternary(self):
        cond = self.binary(0)
        if self.peek() == ("op", "?"):
            self.take()
            a = self.ternary()
            if self.take() != ("op", ":"):
                self.fail("expected ':'")
            b = self.ternary()
            if not isinstance(cond, bool):
                self.fail("ternary condition is not a bool")
            return a if cond else b
        return cond

    def binary(self, min_prec: int):
        left = self.unary()
        while True:
            kind, op = self.peek()
            if kind != "op" or op not in _PREC or _PREC[op] < min_prec:
                return left
            self.take()
            right = self.binary(_PREC[op] + 1)
            left = self.apply(op, left, right)

    def unary(self):
        kind, value = self.peek()
        if kind == "op" and value == "!":
            self.take()
            v = self.unary()
            if not isinstance(v, bool):
                self.fail("'!' needs a bool")
            return not v
        if kind == "op" and value == "-":
            self.take()
            v = self.unary()
            if not isinstance(v, float):
                self.fail("'-' needs a number")
            return -v
        if kind == "op" and value == "(":
            self.take()
            first = self.ternary()
            if self.peek() == ("op", ","):
                items = [first]
                while self.peek() == ("op", ","):
                    self.take()
                    items.append(self.ternary())
                first = tuple(items)
            if self.take() != ("op", ")"):
                self.fail("expected ')'")
            return first
        if kind in ("num", "str", "bool"):
            self.take()
            return value
        self.fail(f"unexpected {value!r}")

    def apply(self, op, a, b):
        if op in ("&&", "||"):
            if not (isinstance(a, bool) and isinstance(b, bool)):
                self.fail(f"{op} needs bools, got {a!r} and {b!r}")
            return (a and b) if op == "&&" else (a or b)
        if op == "==":
            return type(a) is type(b) and a == b
        if op == "!=":
            return not (type(a) is type(b) and a == b)
        if op == "??":
            return a if a is not None else b
        if op in ("=~", "!~"):
            if not (isinstance(a, str) and isinstance(b, str)):
                self.fail(f"{op} needs strings")
            found = re.search(b, a) is not None
            return found if op == "=~" else not found
        if op == "in":
            items = b if isinstance(b, tuple) else (b,)
            return any(type(a) is type(x) and a == x for x in items)
        if op in (">", "<", ">=", "<="):
            if not ((isinstance(a, float) and isinstance(b, float)) or (isinstance(a, str) and isinstance(b, str))):
                self.fail(f"cannot compare {a!r} {op} {b!r}")
            return {">": a > b, "<": a < b, ">=": a >= b, "<=": a <= b}[op]
        if op == "+" and (isinstance(a, str) or isinstance(b, str)):
            return f"{_fmt(a)}{_fmt(b)}"
        if not (isinstance(a, float) and isinstance(b, float)):
            self.fail(f"{op} needs numbers, got {a!r} and {b!r}")
        return {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else float("inf"), "%": a % b, "**": a ** b}[op]


def _fmt(v) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).lower() if isinstance(v, bool) else str(v)


def evaluate_when(text: str) -> bool:
    """True when a substituted ``when`` allows the task to run (empty text: always)."""
    if not text or not text.strip():
        return True
    value = _Parser(text).parse()
    if not isinstance(value, bool):
        raise ExpressionError(f"when {text!r} evaluated to {value!r}, expected a boolean")
    return value

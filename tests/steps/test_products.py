"""Each product's name is typed once, in products.py: a path-like string literal anywhere else in the
package that is (or ends with) a product's file name, or a path join onto a product folder's name typed
as a literal, fails here. The simulator is exempt: it must not import the code it checks."""
import ast
from pathlib import Path

import orca_steps
from orca_steps import products

PACKAGE = Path(orca_steps.__file__).parent
VALUES = {k: v for k, v in vars(products).items() if k.lstrip("_").isupper() and isinstance(v, str)}
FOLDERS = {v for k, v in VALUES.items() if k.endswith("_FOLDER") and "/" not in v}
FILES = {v for v in VALUES.values() if "." in v or v.endswith("_")}  # file names and name prefixes


def _strings(node: ast.AST):
    """String literals of a module with their line, f-string pieces included."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.lineno, sub.value


def _offences(source: str) -> list[str]:
    tree = ast.parse(source)
    found = []
    for line, text in _strings(tree):
        if any(c.isspace() for c in text):
            continue  # prose (docstrings, messages, descriptions) may name a product
        if any(text == name or text.endswith("/" + name) for name in FILES):
            found.append(f"{line}: {text!r}")
    for sub in ast.walk(tree):
        if (isinstance(sub, ast.BinOp) and isinstance(sub.op, ast.Div) and isinstance(sub.right, ast.Constant)
                and sub.right.value in FOLDERS):
            found.append(f"{sub.lineno}: / {sub.right.value!r}")
    return found


def test_product_names_are_typed_only_in_products():
    offences = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "sim" or rel.name == "products.py":
            continue
        bad = _offences(path.read_text())
        if bad:
            offences[str(rel)] = bad
    assert not offences, offences


def test_the_check_catches_a_name_typed_twice():
    assert FILES >= {"flux_check.csv", "timings.jsonl", "provenance.json", "QA/index.html", "snapshot_qa_"}
    assert FOLDERS >= {"QA", "photometry", "transients"}
    assert _offences('path = work / "QA" / "flux_check.csv"\n') == ["1: 'flux_check.csv'", "1: / 'QA'"]
    assert _offences('name = f"snapshot_qa_{sb}.csv"\n') == ["1: 'snapshot_qa_'"]
    assert _offences('"""Writes QA/flux_check.csv."""\nmsg = "no timings.jsonl"\n') == []

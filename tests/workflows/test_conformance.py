"""Argo's own test manifests (the conformance corpus) through the local runner.

Each manifest must end as Argo's e2e tests expect, or be refused with a clear error naming what the
runner does not implement; a run that ends differently is a failure. ``REFUSED`` lists the manifests the
runner refuses on purpose (features neither the chart nor the runner needs), so a refusal that appears or
disappears is noticed too.
"""
from __future__ import annotations

import os

import pytest

from conformance import CORPUS_DIR, corpus_entries, run_entry

ENTRIES = corpus_entries()
ABSENT_OPTIONAL = "outputs of a skipped or omitted node"
REFUSED: dict[str, str] = {   # manifest id -> what the refusal names
    "functional-dag-omitted-output-ref": ABSENT_OPTIONAL,
    "functional-dag-skipped-producer-default": ABSENT_OPTIONAL,
    "functional-dag-skipped-consumer-default": ABSENT_OPTIONAL,
    "functional-steps-skipped-withparam-ref": ABSENT_OPTIONAL,
    "example-skipped-output-expression-fallback": ABSENT_OPTIONAL,
    "functional-steps-when-expr-filter": "expression operator '|'",
    "example-expression-tag-template-workflow": "expression syntax",
    "example-expression-destructure-json-complex": "JSONPath",
    "expectedfailures-parallelism-dag-fail-fast": "failFast",
    "expectedfailures-exit-handler-fail-missing-output": "failed to resolve",
    "hooks-workflow-level-fail": "spec.hooks.running",
    "functional-template-level-timeout": "timeout",
}



def test_the_corpus_is_there():
    """CI has ../shared beside the clone: a missing corpus is a failure, not a silent skip."""
    assert len(ENTRIES) == 38, f"expected Argo's 38 conformance manifests at {CORPUS_DIR} (ORCA_ARGO_CONFORMANCE)"


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_manifest_ends_as_argo_expects_or_is_refused(entry, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{CORPUS_DIR / 'bin'}{os.pathsep}{os.environ['PATH']}")
    outcome, detail = run_entry(entry, tmp_path)
    if entry["id"] in REFUSED:
        assert outcome == "refused" and REFUSED[entry["id"]] in detail, detail
    else:
        assert outcome == "pass", f"{outcome}: {detail}"

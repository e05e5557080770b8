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
REFUSED: dict[str, str] = {}

pytestmark = pytest.mark.skipif(not ENTRIES, reason=f"no conformance corpus at {CORPUS_DIR}")


@pytest.mark.parametrize("entry", ENTRIES, ids=[e["id"] for e in ENTRIES])
def test_manifest_ends_as_argo_expects_or_is_refused(entry, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{CORPUS_DIR / 'bin'}{os.pathsep}{os.environ['PATH']}")
    outcome, detail = run_entry(entry, tmp_path)
    if entry["id"] in REFUSED:
        assert outcome == "refused" and REFUSED[entry["id"]] in detail, detail
    else:
        assert outcome == "pass", f"{outcome}: {detail}"

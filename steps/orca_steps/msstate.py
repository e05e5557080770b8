"""Which in-place steps have run on an MS, kept in the MS's own table keywords.

Phase 2 edits the concat MS in place (fix-field, rephase, aoflagger, QA flags). The state lives with
the data, so a rebuilt MS starts clean and a copied one carries its history:
- ``ORCA_IN_PROGRESS``: the step that is writing now. It is flushed before the first write and removed
  after the last, so an MS still carrying it was left half-written by a killed step; concat then
  rebuilds it instead of reusing it.
- ``ORCA_DONE``: per finished step, a small record of what it did (e.g. the strategy file, the centre),
  so a resumed run can skip work that is already complete.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError
from .msio import open_ms

IN_PROGRESS = "ORCA_IN_PROGRESS"
DONE = "ORCA_DONE"


def _done_record(tab) -> dict:
    if DONE not in tab.keywordnames():
        return {}
    return json.loads(tab.getkeyword(DONE))


def interrupted_step(ms: str | Path) -> str | None:
    """Name of the step that was killed while writing ``ms``, or None if the MS is consistent."""
    with open_ms(ms) as tab:
        return tab.getkeyword(IN_PROGRESS) if IN_PROGRESS in tab.keywordnames() else None


def done_info(ms: str | Path, step: str) -> dict | None:
    """The record ``step`` left when it finished on ``ms``, or None if it has not finished."""
    with open_ms(ms) as tab:
        return done_in(tab, step)


def done_in(tab, step: str) -> dict | None:
    """As done_info, for a table that is already open."""
    return _done_record(tab).get(step)


def _begin(tab, step: str) -> None:
    left = tab.getkeyword(IN_PROGRESS) if IN_PROGRESS in tab.keywordnames() else None
    if left is not None:
        raise InputError(f"{tab.name()}: left half-written by an interrupted '{left}' step; "
                         f"rebuild it (run concat again) before running '{step}'")
    tab.putkeyword(IN_PROGRESS, step)
    tab.flush()


def _end(tab) -> None:
    tab.flush()
    tab.removekeyword(IN_PROGRESS)
    tab.flush()


@contextmanager
def writing(tab, step: str):
    """Mark the open, writable table as being written by ``step`` for the duration of the block.

    Refuses to start on an MS another step left half-written: its contents are unknown. An exception
    inside the block leaves the mark: the MS may be half-written.
    """
    _begin(tab, step)
    yield
    _end(tab)


def mark_done(tab, step: str, info: dict) -> None:
    """Record on the open, writable table that ``step`` finished, with ``info`` (JSON-able)."""
    record = _done_record(tab)
    record[step] = info
    tab.putkeyword(DONE, json.dumps(record))
    tab.flush()


def record_done(ms: str | Path, step: str, info: dict) -> None:
    """As mark_done, opening ``ms`` for it."""
    with open_ms(ms, readonly=False) as tab:
        mark_done(tab, step, info)

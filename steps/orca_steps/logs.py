"""Structured logs (one JSON object a line, on stderr) and per-step timers.

Timers are appended to ``<work_dir>/timings.jsonl`` when a work dir is known, so that the
provenance step can report every step of a unit, whichever pod ran it.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from .products import TIMINGS


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"t": round(record.created, 3), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        return json.dumps(entry, default=str)


def setup_logging(level: str | None = None) -> None:
    root = logging.getLogger("orca")
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter())
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("ORCA_LOG_LEVEL", "INFO")).upper())
    root.propagate = False


def get_logger(name: str) -> logging.Logger:
    return logging.getLogger(f"orca.{name}")


def log(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields) -> None:
    """Log ``msg`` with structured ``fields`` (they become keys of the JSON line)."""
    logger.log(level, msg, extra={"fields": fields})


@contextmanager
def step_timer(step: str, work_dir: str | os.PathLike | None = None, **fields):
    """Time a block; log it and append it to the unit's timings file.

    Yields a dict: keys added inside the block (e.g. ``wsclean_seconds`` spent inside a tool) are recorded too.
    """
    logger = get_logger(step)
    start = time.time()
    status = "ok"
    fields = dict(fields)
    try:
        yield fields
    except BaseException:
        status = "failed"
        raise
    finally:
        elapsed = time.time() - start
        log(logger, "step finished", step=step, status=status, seconds=round(elapsed, 3), **fields)
        if work_dir is not None and Path(work_dir).is_dir():
            record = {"step": step, "status": status, "start": start, "seconds": round(elapsed, 3),
                      "host": socket.gethostname(), **fields}
            with open(Path(work_dir) / TIMINGS, "a") as fh:
                fh.write(json.dumps(record, default=str) + "\n")

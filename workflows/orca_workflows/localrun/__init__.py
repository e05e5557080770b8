"""Run rendered Argo YAML on this machine: pods become local processes, the rest follows Argo's rules.

``run_local`` is what ``orca-argo run-local`` calls; the modules are: ``spec`` (loading, field checks),
``templating``/``exprlang``/``govaluate`` (expressions), ``engine`` (nodes, DAG, steps, pods, child
workflows), ``dag`` (depends logic, DAG phase), ``locks`` (mutexes, semaphores, parallelism), ``pods``
(processes, volume paths), ``runner`` (all workflows of a run, the record), ``progress`` and ``report``.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO

from .errors import ExpressionError, LocalRunError, ResolveError, Unsupported
from .progress import Progress
from .report import final_table, units
from .runner import LocalRunner, parse_volume_roots

__all__ = ["LocalRunner", "LocalRunError", "Unsupported", "ExpressionError", "ResolveError", "run_local",
           "parse_volume_roots", "final_table", "units"]


def run_local(target: str, template_paths: list[str | Path], out_dir: str | Path,
              parameters: dict[str, str] | None = None, volume_roots: dict[str, Path] | None = None,
              semaphore_limits: dict[str, int] | None = None, namespace: str = "default",
              progress: str = "auto", stream: TextIO | None = None, generate_name: str | None = None):
    """Submit ``target`` with ``parameters``, show progress, wait for every workflow (children too).

    Returns (runner, workflow). ``progress`` is 'auto' (live on a terminal, plain lines otherwise),
    'live', 'plain' or 'off'.
    """
    runner = LocalRunner(template_paths, out_dir, volume_roots=volume_roots, namespace=namespace,
                         semaphore_limits=semaphore_limits)
    workflow = runner.submit(target, parameters, generate_name)
    display = None if progress == "off" else Progress(runner, stream or sys.stderr, None if progress == "auto" else progress == "live")
    runner.wait(on_tick=display.tick if display else (lambda: None))
    return runner, workflow

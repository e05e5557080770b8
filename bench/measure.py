"""Shared by the benchmarks: run one measured step in a fresh child process and read its peak memory.

Each step runs in its own spawned process, so its peak resident memory is its own and imports done by
earlier steps do not hide its cost.
"""
from __future__ import annotations

import multiprocessing as mp
from pathlib import Path


def peak_rss_mb() -> float:
    """High-water resident memory of this process (VmHWM; ru_maxrss survives exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(target, step: str, args: dict):
    """Run ``target(step, args, queue)`` in a spawned process; return what it put on the queue."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(step, args, queue))
    proc.start()
    result = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{step} failed in its child process (exit {proc.exitcode})")
    return result

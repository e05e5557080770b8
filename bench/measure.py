"""Shared by the benchmarks: run one measured step in a fresh child process and read its peak memory.

Each step runs in its own spawned process, so its peak resident memory is its own and imports done by
earlier steps do not hide its cost.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
from pathlib import Path


def peak_rss_mb() -> float:
    """High-water resident memory of this process (VmHWM; ru_maxrss survives exec on Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_child(target, step: str, args: dict):
    """Run ``target(step, args, queue)`` in a spawned process; return what it put on the queue.

    The page cache's dirty pages (the fresh MS copies made for earlier runs) are written back first, so
    the kernel's writeback of them does not slow the measured run: it made a plain copy of the full-size
    MS vary from 0.043 to 0.059 s, best of 5, from run to run."""
    os.sync()
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(step, args, queue))
    proc.start()
    while True:  # a child that dies before it answers must not leave us waiting for ever
        try:
            result = queue.get(timeout=1)
            break
        except queue_module.Empty:
            if not proc.is_alive():
                raise RuntimeError(f"{step} failed in its child process (exit {proc.exitcode})") from None
    proc.join()
    if proc.exitcode != 0:
        raise RuntimeError(f"{step} failed in its child process (exit {proc.exitcode})")
    return result


def run_measured(function, trace: bool) -> dict:
    """Call ``function``: its wall and CPU seconds, or with ``trace`` its tracemalloc peak instead (tracing
    slows numpy-heavy code by 15-25 %, so a traced run is never timed); with the peak RSS, and the
    function's result under "result"."""
    import time
    import tracemalloc

    if trace:
        tracemalloc.start()
        result = function()
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        return {"traced_mb": traced, "rss_mb": peak_rss_mb(), "result": result}
    start, cpu = time.perf_counter(), time.process_time()
    result = function()
    return {"seconds": time.perf_counter() - start, "cpu": time.process_time() - cpu, "rss_mb": peak_rss_mb(),
            "result": result}

"""Argo synchronization (mutexes, ConfigMap semaphores) and parallelism slots, in one process.

One :class:`LockManager` serves every workflow of a runner, children included, as one Argo controller
serves its namespace. Waiters are served first come, first served. Every hold is recorded with its
start and end time so tests can check that a limit was never exceeded.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Callable


class FifoSemaphore:
    """A counting semaphore that serves waiters in arrival order and can be abandoned while waiting."""

    def __init__(self, limit: int, cond: threading.Condition):
        self.limit = limit
        self.cond = cond
        self.holders: list[str] = []
        self.queue: list[object] = []

    def acquire(self, holder: str, cancelled: Callable[[], bool] = lambda: False) -> bool:
        ticket = object()
        with self.cond:
            self.queue.append(ticket)
            try:
                while not (self.queue[0] is ticket and len(self.holders) < self.limit):
                    if cancelled():
                        return False
                    self.cond.wait(0.2)
                self.holders.append(holder)
                return True
            finally:
                self.queue.remove(ticket)
                self.cond.notify_all()

    def release(self, holder: str) -> None:
        with self.cond:
            self.holders.remove(holder)
            self.cond.notify_all()


@dataclass
class Hold:
    lock: str
    holder: str
    acquired: float
    released: float | None = None


@dataclass
class LockManager:
    """Named locks shared by all workflows: ``Mutex/<name>`` and ``ConfigMap/<cm>/<key>``."""
    limit_for: Callable[[str, str], int]
    namespace: str = "default"
    cond: threading.Condition = field(default_factory=lambda: threading.Condition(threading.RLock()))
    locks: dict[str, FifoSemaphore] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)

    def keys(self, sync: dict) -> list[tuple[str, int]]:
        """(lock key, limit) for a ``synchronization`` block, in a fixed order to avoid deadlocks."""
        out = []
        for m in sync.get("mutexes") or []:
            out.append((f"{m.get('namespace') or self.namespace}/Mutex/{m['name']}", 1))
        for s in sync.get("semaphores") or []:
            ref = s["configMapKeyRef"]
            limit = self.limit_for(ref["name"], ref["key"])
            out.append((f"{s.get('namespace') or self.namespace}/ConfigMap/{ref['name']}/{ref['key']}", limit))
        return sorted(out)

    def acquire(self, sync: dict, holder: str, cancelled: Callable[[], bool]) -> list[Hold] | None:
        """Take every lock of ``sync`` for ``holder``; None (holding nothing) if cancelled meanwhile."""
        taken: list[Hold] = []
        for key, limit in self.keys(sync):
            with self.cond:
                sem = self.locks.setdefault(key, FifoSemaphore(limit, self.cond))
            if not sem.acquire(holder, cancelled):
                self.release(taken)
                return None
            hold = Hold(key, holder, time.time())
            with self.cond:
                self.holds.append(hold)
            taken.append(hold)
        return taken

    def release(self, holds: list[Hold]) -> None:
        for hold in reversed(holds):
            hold.released = time.time()
            self.locks[hold.lock].release(hold.holder)

    def waiting_on(self, key: str) -> int:
        with self.cond:
            sem = self.locks.get(key)
            return len(sem.queue) if sem else 0


class Slots:
    """A parallelism limit (template or workflow ``parallelism``): None means unlimited."""

    def __init__(self, limit: int | None, cond: threading.Condition):
        self.sem = FifoSemaphore(limit, cond) if limit else None

    def acquire(self, holder: str, cancelled: Callable[[], bool]) -> bool:
        return True if self.sem is None else self.sem.acquire(holder, cancelled)

    def release(self, holder: str) -> None:
        if self.sem is not None:
            self.sem.release(holder)

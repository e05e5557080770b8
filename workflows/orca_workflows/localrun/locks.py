"""Argo synchronization (mutexes, ConfigMap semaphores) and parallelism slots, in one process.

One :class:`LockManager` serves every workflow of a runner, children included, as one Argo controller
serves its namespace. Waiters are ordered as Argo orders them (see :class:`LockManager`). Every hold is recorded with its
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
class Waiter:
    holder: str
    priority: int       # the workflow's spec.priority: higher first
    created: float      # the workflow's creation time: earlier first
    seq: int            # arrival, to break ties


@dataclass
class LockManager:
    """Named locks shared by all workflows: ``Mutex/<name>`` and ``ConfigMap/<cm>/<key>``.

    As Argo's sync manager (workflow/sync/sync_manager.go tryAcquireImpl, semaphore.go checkAcquire,
    multi_throttler.go priorityQueue.Less): a holder waits in the queue of every lock it asks for, ordered
    by its workflow's priority (higher first) then creation time; it takes its locks all at once, only when
    it is at the front of every queue and every lock has room, never some of them.
    """
    limit_for: Callable[[str, str], int]
    namespace: str = "default"
    cond: threading.Condition = field(default_factory=lambda: threading.Condition(threading.RLock()))
    holders: dict[str, list[str]] = field(default_factory=dict)
    queues: dict[str, list[Waiter]] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)
    _seq: int = 0

    def keys(self, sync: dict) -> list[tuple[str, int]]:
        """(lock key, limit) for a ``synchronization`` block; a missing semaphore key raises LocalRunError."""
        out = []
        for m in sync.get("mutexes") or []:
            out.append((f"{m.get('namespace') or self.namespace}/Mutex/{m['name']}", 1))
        for s in sync.get("semaphores") or []:
            ref = s["configMapKeyRef"]
            limit = self.limit_for(ref["name"], ref["key"])
            out.append((f"{s.get('namespace') or self.namespace}/ConfigMap/{ref['name']}/{ref['key']}", limit))
        return out

    def _front_and_free(self, keys: list[tuple[str, int]], waiter: Waiter) -> bool:
        return all(self.queues[k][0] is waiter and len(self.holders.setdefault(k, [])) < limit
                   for k, limit in keys)

    def acquire(self, sync: dict, holder: str, cancelled: Callable[[], bool], priority: int = 0,
                created: float = 0.0) -> list[Hold] | None:
        """Take every lock of ``sync`` for ``holder``; None (holding nothing) if cancelled meanwhile."""
        keys = self.keys(sync)
        with self.cond:
            self._seq += 1
            waiter = Waiter(holder, priority, created, self._seq)
            for key, _ in keys:
                queue = self.queues.setdefault(key, [])
                queue.append(waiter)
                queue.sort(key=lambda w: (-w.priority, w.created, w.seq))
            try:
                while not self._front_and_free(keys, waiter):
                    if cancelled():
                        return None
                    self.cond.wait(0.2)
                now = time.time()
                taken = []
                for key, _ in keys:
                    self.holders[key].append(holder)
                    taken.append(Hold(key, holder, now))
                self.holds.extend(taken)
                return taken
            finally:
                for key, _ in keys:
                    self.queues[key].remove(waiter)
                self.cond.notify_all()

    def release(self, holds: list[Hold]) -> None:
        with self.cond:
            for hold in holds:
                hold.released = time.time()
                self.holders[hold.lock].remove(hold.holder)
            self.cond.notify_all()

    def waiting_on(self, key: str) -> int:
        with self.cond:
            return len(self.queues.get(key, []))


class Slots:
    """A parallelism limit (template or workflow ``parallelism``): None means unlimited."""

    def __init__(self, limit: int | None, cond: threading.Condition):
        self.sem = FifoSemaphore(limit, cond) if limit else None

    def acquire(self, holder: str, cancelled: Callable[[], bool]) -> bool:
        return True if self.sem is None else self.sem.acquire(holder, cancelled)

    def release(self, holder: str) -> None:
        if self.sem is not None:
            self.sem.release(holder)

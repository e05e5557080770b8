"""What a node runs in: its template scope, boundary, cancel flag and parallelism slot."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Callable

from .locks import Slots


class NodeError(Exception):
    """Ends a node with phase Error and this message (what Argo would report on the node)."""


@dataclass
class Ctx:
    """Where a node runs: the template scope (a WorkflowTemplate name or None), its boundary, and
    the cancel flag that applies to it (the exit handler has its own)."""
    tscope: str | None
    boundary: str | None
    cancel: threading.Event
    extra: dict = field(default_factory=dict)
    slots: Slots | None = None
    depth: int = 0   # nested template calls so far (Argo stops at MAX_STACK_DEPTH)
    execution_deadline: float | None = None   # epoch seconds: pods of a retry attempt end by then


# workflow/controller/controller.go maxAllowedStackDepth; operator.go executeTemplate counts every nested
# call and marks the node that reaches it Error.
MAX_STACK_DEPTH = 100
MAX_DEPTH_MESSAGE = "Maximum recursion depth exceeded"


class SlotToken:
    """A parallelism slot of the enclosing DAG/steps, taken before a child starts, given back between retries."""

    def __init__(self, slots: Slots | None, holder: str):
        self.slots, self.holder, self.held = slots, holder, False

    def take(self, cancelled: Callable[[], bool]) -> bool:
        if self.slots is None or self.held:
            return True
        self.held = self.slots.acquire(self.holder, cancelled)
        return self.held

    def give_back(self) -> None:
        if self.held and self.slots is not None:
            self.slots.release(self.holder)
        self.held = False


"""What every limiter that hands out slots one at a time holds: where its state lives, its name,
and the clock and sleep it waits with (injected, so tests compress or freeze time)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from relay.core.store.table import Table

# A 429 from the upstream pauses every sender of this process until its reset time.
_paused_until = 0.0
_pause_lock = threading.Lock()


def pause_until(ts: float) -> None:
    global _paused_until
    with _pause_lock:
        _paused_until = max(_paused_until, ts)


def paused_until() -> float:
    return _paused_until


@dataclass(kw_only=True)
class SlotLimiter:
    table: Table
    name: str
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)

    def acquire(self, max_wait_s: float) -> float | None:
        """A slot now or within ``max_wait_s`` (the time it was taken), else None; the caller
        sends at once."""
        raise NotImplementedError

    def acquire_until_answered(self, max_wait_s: float) -> float | None:
        """:meth:`acquire`, for a caller that says when its request was answered
        (:meth:`answered`); limiters that need not know take it as :meth:`acquire`."""
        return self.acquire(max_wait_s)

    def answered(self, taken_at: float, answered_at: float | None) -> None:
        """The request of the slot taken at ``taken_at`` was answered at ``answered_at`` (None:
        never sent)."""

    def still_valid(self, taken_at: float) -> bool:
        """Whether a request made now still fits the slot taken at ``taken_at``. A slot holds
        only if its request is made promptly: a caller that did anything slow in between (a
        DynamoDB write on a loaded machine) asks here and takes a fresh slot if not."""
        return self.clock() - taken_at <= PROMPT_S


# How long after a sliding-log slot its request may still be made.
PROMPT_S = 0.05

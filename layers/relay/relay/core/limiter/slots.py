"""What every limiter that hands out slots one at a time holds: where its state lives, its name,
and the clock and sleep it waits with (injected, so tests compress or freeze time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from relay.core.store.table import Table


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

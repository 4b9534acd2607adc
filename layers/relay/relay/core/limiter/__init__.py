"""Rate limiting, written by hand (no maintained library keeps these in DynamoDB): a sliding log
(``sliding_log`` + ``log_store``), correct at any rate, and time buckets (``buckets``) for
hundreds of requests a second, where a log would be rewritten on every send.

:func:`per_second` picks one for "at most ``rps`` requests in any second", and a 429 that slips
through pauses every sender of the process until its reset (:func:`pause_until`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from relay.core.limiter.slots import SlotLimiter as Limiter
from relay.core.store.table import Table


def per_second(
    table: Table,
    name: str,
    rps: float,
    *,
    min_bucket_s: float = 0.05,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Limiter:
    """Buckets where they can keep any 1-second window within ``rps`` (2/s and more), else a log."""
    from relay.core.limiter import buckets

    found = buckets.plan(rps, min_bucket_s)
    if found is not None:
        return buckets.BucketLimiter(table=table, name=name, plan=found, clock=clock, sleep=sleep)
    from relay.core.limiter.log_store import LogLimiter
    from relay.core.limiter.sliding_log import Rule

    # Below 2/s: at most floor(rps) in any second, or one per 1/rps seconds under one a second.
    rule = Rule(int(rps), 1.0) if rps >= 1 else Rule(1, 1.0 / rps)
    return LogLimiter(table=table, name=name, rule=rule, clock=clock, sleep=sleep)


# A 429 from the upstream pauses every sender of this process until its reset time.
_paused_until = 0.0
_pause_lock = threading.Lock()


def pause_until(ts: float) -> None:
    global _paused_until
    with _pause_lock:
        _paused_until = max(_paused_until, ts)


def paused_until() -> float:
    return _paused_until

"""Rate limiting, written by hand (no maintained library keeps these in DynamoDB): a sliding log
(``sliding_log`` + ``log_store``), correct at any rate, and time buckets (``buckets``) for
hundreds of requests a second, where a log would be rewritten on every send.

:func:`per_second` picks one for "at most ``rps`` requests in any second", and a 429 that slips
through pauses every sender of the process until its reset (:func:`pause_until`).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from relay.core.limiter.buckets import BucketLimiter, plan
from relay.core.limiter.log_store import LogLimiter
from relay.core.limiter.sliding_log import Rule
from relay.core.limiter.slots import SlotLimiter as Limiter
from relay.core.limiter.slots import pause_until, paused_until
from relay.core.store.table import Table

__all__ = ["Limiter", "pause_until", "paused_until", "per_second"]


def per_second(
    table: Table,
    name: str,
    rps: float,
    *,
    min_bucket_s: float = 0.05,
    unsettled_max_s: float = 60.0,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
) -> Limiter:
    """Buckets where they can keep any 1-second window within ``rps`` (2/s and more), else a log."""
    found = plan(rps, min_bucket_s)
    if found is not None:
        return BucketLimiter(table=table, name=name, plan=found, clock=clock, sleep=sleep)
    # Below 2/s: at most floor(rps) in any second, or one per 1/rps seconds under one a second.
    # ``unsettled_max_s``: how long a slot taken until answered may still reach the upstream (its
    # call's longest possible duration); past that a crashed caller's slot is counted as used then.
    window = (int(rps), 1.0) if rps >= 1 else (1, 1.0 / rps)
    rule = Rule(*window, unsettled_max_s=unsettled_max_s)
    return LogLimiter(table=table, name=name, rule=rule, clock=clock, sleep=sleep)

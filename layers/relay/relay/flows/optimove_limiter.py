"""Per-brand rate limit for Optimove (OPTIMOVE_BRAND_RPS, 500/s documented): time buckets.

Why not the sliding log the Optimized.app path uses: at 500 requests a second a log holds 500
entries and would be rewritten (and fought over) on every send. Instead time is cut into buckets
of ``width = 1/m`` seconds, each a DynamoDB item with a counter, and a sender takes a slot with
ONE conditional ADD (``n < quota``); a full bucket means waiting for the next one.

Why it holds for a window of ANY alignment: a 1-second window [t, t+1) overlaps at most ``m + 1``
buckets (m whole ones plus the parts at both ends). With ``quota = floor(rps / (m + 1))`` no
window, however the upstream aligns it, can see more than ``(m + 1) * quota <= rps`` requests,
provided each request is made inside the bucket whose slot it took (a sender sends right after
taking it). The price is throughput: ``m * quota`` per second. ``m`` is chosen to maximise it
among bucket widths >= OPTIMOVE_LIMIT_BUCKET_MIN_S (each bucket is an item): rps 500 gives
m=19, quota 25, 475/s (95 %); rps 50 gives m=9, quota 5, 45/s (90 %).

Network latency can still shift arrivals; a 429 that slips through is honoured (Retry-After) and
the message retried, and every sender in this process pauses until then.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from relay.store import optimove as store
from relay.store.table import Table

BUCKET_TTL_S = 3600


@dataclass(frozen=True)
class BucketPlan:
    per_second: int  # m: buckets per second
    quota: int  # slots per bucket

    @property
    def width_s(self) -> float:
        return 1.0 / self.per_second

    @property
    def throughput(self) -> int:
        return self.per_second * self.quota


def plan(rps: float, min_width_s: float) -> BucketPlan:
    best = BucketPlan(1, max(1, math.floor(rps / 2)))
    for m in range(1, max(1, math.floor(1 / min_width_s)) + 1):
        quota = math.floor(rps / (m + 1))
        if quota >= 1 and m * quota > best.throughput:
            best = BucketPlan(m, quota)
    return best


# A 429 from the upstream pauses every sender of this process until its Retry-After.
_blocked_until = 0.0
_block_lock = threading.Lock()


def block_until(ts: float) -> None:
    global _blocked_until
    with _block_lock:
        _blocked_until = max(_blocked_until, ts)


def blocked_until() -> float:
    return _blocked_until


class BrandLimiter:
    def __init__(
        self,
        table: Table,
        brand: str,
        rps: float,
        min_width_s: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table = table
        self.brand = brand
        self.plan = plan(rps, min_width_s)
        self.clock = clock
        self.sleep = sleep

    def acquire(self, max_wait_s: float) -> float | None:
        """Take a slot, waiting in-process at most ``max_wait_s``. Returns None (no slot) or the
        time the slot was taken; the caller sends at once."""
        deadline = self.clock() + max_wait_s
        width = self.plan.width_s
        while True:
            now = self.clock()
            if blocked_until() > now:
                if blocked_until() > deadline:
                    return None
                self.sleep(blocked_until() - now)
                continue
            index = math.floor(now / width)
            if store.take_bucket_slot(
                self.table, self.brand, index, self.plan.quota, expires_at=int(now + BUCKET_TTL_S)
            ):
                return now
            next_start = (index + 1) * width
            if next_start > deadline:
                return None
            self.sleep(max(0.0, next_start - self.clock()))

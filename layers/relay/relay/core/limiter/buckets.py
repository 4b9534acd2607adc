"""Time buckets: at most ``rps`` requests in any 1-second window, for rates of 2/s and more.

Why not the sliding log: at 500 requests a second a log holds 500 entries and would be rewritten
(and fought over) on every send. Instead time is cut into buckets of ``width = 1/m`` seconds, each
a DynamoDB item with a counter, and a sender takes a slot with ONE conditional ADD (``n < quota``);
a full bucket means waiting for the next one.

Why it holds for a window of ANY alignment: a 1-second window [t, t+1) overlaps at most ``m + 1``
buckets (m whole ones plus the parts at both ends). With ``quota = floor(rps / (m + 1))`` no
window, however the upstream aligns it, can see more than ``(m + 1) * quota <= rps`` requests,
provided each request is made inside the bucket whose slot it took (a sender sends right after
taking it). The price is throughput: ``m * quota`` per second. ``m`` is chosen to maximise it
among bucket widths >= the minimum (each bucket is an item): rps 500 gives m=19, quota 25, 475/s
(95 %); rps 50 gives m=9, quota 5, 45/s (90 %). Below 2/s no ``m`` gives a quota of one (two
adjacent buckets can put two requests in one second): :func:`plan` says so and the caller uses
the sliding log instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from relay.core.limiter.slots import SlotLimiter, paused_until
from relay.core.store import codec, keys
from relay.core.store.table import ConditionFailed, Table

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


def plan(rps: float, min_width_s: float) -> BucketPlan | None:
    """The most throughput any window alignment allows, or None below 2/s (no bucket can)."""
    best: BucketPlan | None = None
    for m in range(1, max(1, math.floor(1 / min_width_s)) + 1):
        quota = math.floor(rps / (m + 1))
        if quota >= 1 and (best is None or m * quota > best.throughput):
            best = BucketPlan(m, quota)
    return best


def take_slot(table: Table, name: str, index: int, quota: int, *, expires_at: int) -> bool:
    """One conditional ADD: a slot in bucket ``index`` iff fewer than ``quota`` were taken."""
    try:
        table.update(
            keys.limiter_bucket(name, index),
            "ADD n :one SET expires_at = :exp",
            values=codec.values(one=1, q=quota, exp=expires_at),
            condition="attribute_not_exists(n) OR n < :q",
        )
    except ConditionFailed:
        return False
    return True


@dataclass(kw_only=True)
class BucketLimiter(SlotLimiter):
    plan: BucketPlan

    def still_valid(self, taken_at: float) -> bool:
        """A request must be made inside the bucket whose slot it took (see the module's proof)."""
        width = self.plan.width_s
        return self.clock() < (math.floor(taken_at / width) + 1) * width

    def acquire(self, max_wait_s: float) -> float | None:
        deadline = self.clock() + max_wait_s
        width = self.plan.width_s
        while True:
            now = self.clock()
            if paused_until() > now:
                if paused_until() > deadline:
                    return None
                self.sleep(paused_until() - now)
                continue
            index = math.floor(now / width)
            if take_slot(self.table, self.name, index, self.plan.quota, expires_at=int(now + BUCKET_TTL_S)):
                return now
            next_start = (index + 1) * width
            if next_start > deadline:
                return None
            self.sleep(max(0.0, next_start - self.clock()))

"""A token bucket kept in one DynamoDB item, taken n tokens at a time (a weighted take).

For upstreams that count *units of work* rather than requests, and allow a burst on top of a
steady rate: Batch.com's ``/profiles/update`` allows ``rate`` updates a second with bursts up to
``burst``, one update being one distinct profile in a call, so one call takes as many tokens as
it touches profiles. Written by hand: no maintained library keeps a shared bucket in DynamoDB.

The upstream's limit, as a token bucket: a sequence of arrivals conforms to a bucket of rate R and
capacity B (starting full, as an upstream's bucket is after any quiet moment) iff

    for every interval [s, t]:  arrivals in [s, t]  <=  B + R * (t - s).               (1)

That condition holds for every interval however the upstream aligns or phases its bucket; it
refers to no window boundary, so "any alignment" is the same as "every interval".

What we can control is when tokens are TAKEN, not when requests ARRIVE: a request arrives some
``d`` after its take (our own work between take and send, then the network), ``0 <= d <= D``.
Our bucket has the same rate R and a smaller capacity ``C = B - R * D``. Takes from it satisfy,
by the same argument as (1), ``takes in [u, v] <= C + R * (v - u)`` for every [u, v]. Arrivals in
[s, t] were taken in [s - D, t], so

    arrivals in [s, t]  <=  takes in [s - D, t]  <=  C + R * (t - s + D)  =  B + R * (t - s),

which is (1): nothing we send can be refused by a conforming upstream bucket, however it is
aligned. The price is the burst: R * D of it is never used (with R=300/s, B=1000 and D=1 s, our
bursts are 700). ``D`` is ``slack_s``: the dispatcher sends at once after its take and takes a
fresh one if more than half of it passed (``still_valid``), leaving the other half for the request
to reach the upstream. A request slower than that may be refused with a 429; that is retried,
never lost, and blocks the bucket until the upstream's reset (:meth:`TokenBucket.block`).

The item holds ``tokens`` (at ``at``) and ``blocked_until``; a take reads it (consistent), refills
``R * (now - at)`` up to C, and writes ``tokens - n`` back with a condition on the version it read:
two dispatchers never spend the same tokens. A take of n > C could never succeed: refused at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from relay.core.limiter.slots import paused_until
from relay.core.store import codec, keys
from relay.core.store.table import ConditionFailed, Table

BUCKET_TTL_S = 86_400


@dataclass(frozen=True)
class State:
    tokens: float
    at: float
    blocked_until: float = 0.0
    version: int = 0


@dataclass(kw_only=True)
class TokenBucket:
    table: Table
    name: str
    rate: float  # tokens a second
    burst: float  # the upstream's capacity
    slack_s: float = 1.0  # D: longest take-to-arrival delay the capacity allows for
    clock: Callable[[], float] = field(default=time.time)
    sleep: Callable[[float], None] = field(default=time.sleep)

    @property
    def capacity(self) -> float:
        """C = B - R * D (see the module's proof), never below one token."""
        return max(1.0, self.burst - self.rate * self.slack_s)

    def read(self) -> State:
        item = self.table.get(keys.limiter(self.name))
        if not item:
            return State(tokens=self.capacity, at=0.0)
        return State(
            tokens=float(item.get("tokens", self.capacity)),
            at=float(item.get("at", 0.0)),
            blocked_until=float(item.get("blocked_until", 0.0)),
            version=int(item.get("v", 0)),
        )

    def available(self, state: State, now: float) -> float:
        if state.at == 0.0:
            return self.capacity
        return min(self.capacity, state.tokens + self.rate * max(0.0, now - state.at))

    def _write(self, state: State, tokens: float, at: float, blocked_until: float) -> bool:
        try:
            self.table.update(
                keys.limiter(self.name),
                "SET tokens = :t, #at = :at, blocked_until = :b, v = :next, expires_at = :exp",
                values=codec.values(
                    t=tokens,
                    at=at,
                    b=blocked_until,
                    next=state.version + 1,
                    v=state.version,
                    exp=int(at + BUCKET_TTL_S),
                ),
                names={"#at": "at"},
                condition="attribute_not_exists(v) OR v = :v" if state.version == 0 else "v = :v",
            )
        except ConditionFailed:
            return False
        return True

    def wait_for(self, n: float) -> float:
        """Seconds until ``n`` tokens are there (0: now), as the bucket stands."""
        state, now = self.read(), self.clock()
        start = max(now, state.blocked_until, paused_until())
        missing = n - self.available(state, start)
        return max(0.0, start - now) + (max(0.0, missing) / self.rate)

    def acquire(self, n: float, max_wait_s: float) -> float | None:
        """Take ``n`` tokens now or within ``max_wait_s``: the time taken, else None."""
        if n > self.capacity:
            raise ValueError(f"{self.name}: a take of {n} can never fit a capacity of {self.capacity}")
        deadline = self.clock() + max_wait_s
        while True:
            state, now = self.read(), self.clock()
            ready_at = max(state.blocked_until, paused_until())
            if ready_at <= now:
                have = self.available(state, now)
                if have >= n:
                    # `at` never moves back: another instance's clock may run a little ahead.
                    at = max(now, state.at)
                    if self._write(state, self.available(state, at) - n, at, state.blocked_until):
                        return now
                    continue  # someone else took tokens meanwhile: read again
                ready_at = now + (n - have) / self.rate
            if ready_at > deadline:
                return None
            self.sleep(max(0.0, ready_at - now))

    def still_valid(self, taken_at: float) -> bool:
        """A request must leave within half the slack of its take (see the module's proof)."""
        return self.clock() - taken_at <= self.slack_s / 2

    def block(self, until: float) -> None:
        """The upstream refused (429) or is down: no take before ``until`` (only ever later)."""
        while True:
            state = self.read()
            if state.blocked_until >= until:
                return
            now = self.clock()
            at = max(now, state.at) if state.at else now
            if self._write(state, self.available(state, at), at, until):
                return

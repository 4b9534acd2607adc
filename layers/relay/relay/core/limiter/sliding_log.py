"""Sliding-log rate limiting: at most ``limit`` hits in ANY window of ``window_s`` seconds.

Written by hand because no maintained library keeps a sliding log in DynamoDB with the
semantics we need. Why a sliding log: Optimized.app's limiter is Laravel-style, its fixed window
opens at the first hit, so a clock-aligned fixed window on our side can put 2 x limit requests
into one of its windows. A log that never allows ``limit + 1`` hits within ``window_s`` is safe
against a window that opens at any moment. This module is pure (no I/O): the store persists the
log with a version number and conditional writes so concurrent dispatchers never share a slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Rule:
    limit: int
    window_s: float
    # How late after its stamp an unsettled hit can still reach the upstream (claim to answer:
    # loading, an inline wait, the HTTP timeouts). Past that it is counted at stamp + this.
    unsettled_max_s: float = 60.0


@dataclass
class Log:
    """The recent hits of one limiter key, as stored (``version`` guards concurrent writers).

    ``hits`` are settled: stamped when the upstream's answer arrived, an upper bound of when it
    counted the request. ``unsettled`` are slots claimed whose answer is not in yet; their requests
    may reach the upstream at any moment from their stamp on, so a reader counts each as happening
    right now (it holds its window open) until it is settled or its bound has passed. Without
    that, a second dispatcher reading an early stamp could book the next window too soon.
    """

    hits: list[float] = field(default_factory=list)
    unsettled: list[float] = field(default_factory=list)
    blocked_until: float = 0.0
    version: int = 0

    def times(self, rule: Rule, at: float) -> list[float]:
        """Every hit as of ``at``, unsettled ones counted as late as they may still happen."""
        pending = (min(max(u, at), u + rule.unsettled_max_s) for u in self.unsettled)
        return sorted([*self.hits, *pending])

    def recent(self, rule: Rule, now: float) -> list[float]:
        # ``h + window_s > now``, not ``h > now - window_s``: the slots below are computed as
        # ``h + window_s``, and only the same float expression makes a hit leave its window at
        # exactly the slot they offer (3.8000000000000003 > 7.5 - 3.7, yet 3.8000000000000003 + 3.7 == 7.5).
        return [h for h in self.times(rule, now) if h + rule.window_s > now]

    def next_slot(self, rule: Rule, now: float) -> float:
        """Earliest time >= now at which one more hit keeps every window within the limit."""
        return self.slot_for(rule, now, 1)

    def slot_for(self, rule: Rule, now: float, count: int) -> float:
        """Earliest time >= now at which ``count`` hits may be taken at once."""
        at = max(now, self.blocked_until)
        recent = self.recent(rule, at)
        keep = rule.limit - min(count, rule.limit)  # hits that may stay in the window
        if len(recent) > keep:
            # The hit that must leave the window before the last of ours may enter it.
            at = max(at, recent[len(recent) - keep - 1] + rule.window_s)
        return at

    def free(self, rule: Rule, now: float) -> int:
        """How many hits may be taken at ``now`` at once."""
        if self.blocked_until > now:
            return 0
        return max(0, rule.limit - len(self.recent(rule, now)))

    def with_hits(self, rule: Rule, at: float, count: int = 1, *, now: float | None = None) -> Log:
        """This log with ``count`` unsettled hits stamped ``at``, and the entries expired by
        ``now`` (the time of writing, ``at`` when not given) dropped.

        A slot may be claimed ahead of its time (stamped at the slot, ``at`` > ``now``): entries
        that expire between ``now`` and ``at`` must stay, because other readers before ``at``
        still count them. Dropping them by ``at`` let a second dispatcher see a window emptier
        than it was and send one request over the limit (a 429)."""
        written = at if now is None else min(now, at)
        horizon = written - rule.window_s - rule.unsettled_max_s
        return Log(
            hits=[h for h in self.hits if h + rule.window_s > written],
            unsettled=[*(u for u in self.unsettled if u > horizon), *([at] * count)],
            blocked_until=self.blocked_until,
            version=self.version,
        )

    def settled(self, stamp: float, answered_at: list[float], unused: int = 0) -> Log:
        """One unsettled hit stamped ``stamp`` per answer moves to its answer time; ``unused``
        more are dropped (slots taken for requests that were never sent)."""
        unsettled = list(self.unsettled)
        for _ in range(len(answered_at) + unused):
            if stamp in unsettled:
                unsettled.remove(stamp)
        return Log(
            hits=sorted([*self.hits, *answered_at]),
            unsettled=unsettled,
            blocked_until=self.blocked_until,
            version=self.version,
        )

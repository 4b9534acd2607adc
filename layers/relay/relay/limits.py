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


@dataclass
class Log:
    """The recent hits of one limiter key, as stored (``version`` guards concurrent writers)."""

    hits: list[float] = field(default_factory=list)
    blocked_until: float = 0.0
    version: int = 0

    def recent(self, rule: Rule, now: float) -> list[float]:
        # ``h + window_s > now``, not ``h > now - window_s``: the slots below are computed as
        # ``h + window_s``, and only the same float expression makes a hit leave its window at
        # exactly the slot they offer (3.8000000000000003 > 7.5 - 3.7, yet 3.8000000000000003 + 3.7 == 7.5).
        return sorted(h for h in self.hits if h + rule.window_s > now)

    def next_slot(self, rule: Rule, now: float) -> float:
        """Earliest time >= now at which one more hit keeps every window within the limit."""
        at = max(now, self.blocked_until)
        recent = self.recent(rule, at)
        if len(recent) >= rule.limit:
            # The hit `limit` places back must leave the window before another may enter it.
            at = max(at, recent[-rule.limit] + rule.window_s)
        return at

    def slot_for(self, rule: Rule, now: float, count: int) -> float:
        """Earliest time >= now at which ``count`` hits may be taken at once."""
        at = max(now, self.blocked_until)
        recent = self.recent(rule, at)
        keep = rule.limit - min(count, rule.limit)  # hits that may stay in the window
        if len(recent) > keep:
            at = max(at, recent[len(recent) - keep - 1] + rule.window_s)
        return at

    def free(self, rule: Rule, now: float) -> int:
        """How many hits may be taken at ``now`` at once."""
        if self.blocked_until > now:
            return 0
        return max(0, rule.limit - len(self.recent(rule, now)))

    def with_hits(self, rule: Rule, now: float, count: int = 1) -> Log:
        return Log(
            hits=[*self.recent(rule, now), *([now] * count)],
            blocked_until=self.blocked_until,
            version=self.version,
        )

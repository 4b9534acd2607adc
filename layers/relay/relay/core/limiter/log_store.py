"""Persistence of limiter logs: read consistently, write back only if nobody else did."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any

from relay.core.limiter.sliding_log import Log, Rule
from relay.core.limiter.slots import SlotLimiter, paused_until
from relay.core.store import codec, keys
from relay.core.store.table import ConditionFailed, Table, TransactionCancelled, update_operation


def read_logs(table: Table, names: list[str]) -> dict[str, Log]:
    found = {item["pk"]: item for item in table.get_many([keys.limiter(n) for n in names])}
    logs: dict[str, Log] = {}
    for name in names:
        item = found.get(keys.limiter(name)["pk"])
        logs[name] = (
            Log(
                hits=item.get("hits", []),
                unsettled=item.get("unsettled", []),
                blocked_until=item.get("blocked_until", 0.0),
                version=item["v"],
            )
            if item
            else Log()
        )
    return logs


def write_log_operation(name: str, log: Log, *, expires_at: int) -> dict[str, Any]:
    """A transaction item replacing the log iff its version is the one we read."""
    return update_operation(
        keys.limiter(name),
        "SET hits = :hits, unsettled = :unsettled, blocked_until = :blocked, v = :next, expires_at = :exp",
        values=codec.values(
            hits=log.hits,
            unsettled=log.unsettled,
            blocked=log.blocked_until,
            next=log.version + 1,
            v=log.version,
            exp=expires_at,
        ),
        condition="attribute_not_exists(pk) OR v = :v" if log.version == 0 else "v = :v",
    )


def block(table: Table, name: str, until: float, *, expires_at: int) -> None:
    """Feed an upstream's 429 reset time back into the log (only ever moves it later)."""
    with contextlib.suppress(ConditionFailed):  # already blocked at least that long
        table.update(
            keys.limiter(name),
            "SET blocked_until = :until, expires_at = :exp ADD v :one",
            values=codec.values(until=until, exp=expires_at, one=1),
            condition="attribute_not_exists(blocked_until) OR blocked_until < :until",
        )


def settle(
    table: Table,
    names: list[str],
    provisional: float,
    actual: list[float],
    *,
    expires_at: int,
    unused: int = 0,
) -> dict[str, Log]:
    """Settle the hits claimed at ``provisional``: one per entry of ``actual``, moved to that time
    (when the upstream had answered that request), and ``unused`` ones (never sent) dropped. An
    answer time is an upper bound of when the upstream counted the request, so windows measured
    from it can never open early on the upstream's side, whatever the network latency was.
    Returns the logs as written."""
    while True:
        logs = read_logs(table, names)
        settled = {name: log.settled(provisional, actual, unused) for name, log in logs.items()}
        try:
            table.transact([write_log_operation(n, log, expires_at=expires_at) for n, log in settled.items()])
        except TransactionCancelled:
            continue  # someone else took a slot meanwhile: read again and re-apply
        return {n: replace(log, version=log.version + 1) for n, log in settled.items()}


@dataclass(kw_only=True)
class LogLimiter(SlotLimiter):
    """A sliding log taken one slot at a time (low rates: at most ``rule.limit`` in any window).

    :meth:`acquire` stamps the slot settled at once: the caller sends right after taking it, as
    with buckets. :meth:`acquire_until_answered` leaves it unsettled (every reader counts it as
    happening now) until :meth:`answered` moves it to the answer's time: where the upstream counts
    strictly (one request a second, measured at its door), a request that took longer to arrive
    than the one before it can then never land inside the same second."""

    rule: Rule

    def acquire(self, max_wait_s: float) -> float | None:
        return self._take(max_wait_s, settle=True)

    def acquire_until_answered(self, max_wait_s: float) -> float | None:
        return self._take(max_wait_s, settle=False)

    def answered(self, taken_at: float, answered_at: float | None) -> None:
        """The request of the slot taken at ``taken_at`` was answered at ``answered_at`` (None:
        it was never sent, the slot is given back)."""
        settle(
            self.table,
            [self.name],
            taken_at,
            [] if answered_at is None else [answered_at],
            expires_at=int(self.clock() + self.rule.window_s + 3600),
            unused=1 if answered_at is None else 0,
        )

    def _take(self, max_wait_s: float, *, settle: bool) -> float | None:
        deadline = self.clock() + max_wait_s
        while True:
            now = self.clock()
            log = read_logs(self.table, [self.name])[self.name]
            at = max(log.next_slot(self.rule, now), paused_until())
            if at > deadline:
                return None
            if at > now:
                self.sleep(at - now)
                continue
            taken = log.with_hits(self.rule, now)
            if settle:
                taken = taken.settled(now, [now])
            try:
                self.table.transact(
                    [write_log_operation(self.name, taken, expires_at=int(now + self.rule.window_s + 3600))]
                )
            except TransactionCancelled:
                continue  # another sender took a slot meanwhile: read again
            return now

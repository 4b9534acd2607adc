"""Following an Optimove execution to a terminal status: one status read per poll message, the
next poll re-queued with a growing SQS delay (nothing sleeps), `unknown` after OPTIMOVE_POLL_MAX_S."""

from __future__ import annotations

from typing import Any

from relay.core.failpoints import failpoint
from relay.core.store.table import ConditionFailed
from relay.destinations.optimove import store
from relay.destinations.optimove.client import RateLimited, Rejected, Status
from relay.destinations.optimove.send import OptimoveDeps, _finish

FOLLOWED = ("accepted", "processing")


def next_delay(attempt: int, deps: OptimoveDeps) -> float:
    s = deps.settings
    return min(s.optimove_poll_max_delay_s, s.optimove_poll_first_delay_s * s.optimove_poll_backoff**attempt)


def poll_one(
    execution_id: str, attempt: int, deps: OptimoveDeps, *, optimove_execution_id: str | None = None
) -> str:
    """Status read number ``attempt`` of the run's one poll chain. The chain's current read is the
    run's ``poll_seq``: a read that is not (a redelivered or duplicated message) does nothing, and
    moving the chain on is a conditional write, so at most one delivery of a read queues the next.
    """
    item = store.get(deps.table, execution_id)
    if not item:
        return "no such execution"
    s, table, status = deps.settings, deps.table, item["status"]
    if status == "sending":
        if optimove_execution_id:
            recorded = _record_accepted(execution_id, attempt, optimove_execution_id, deps)
            if recorded is not None:
                item, status = recorded, "accepted"
        if status == "sending":
            deps.queues.poll(
                execution_id,
                attempt=attempt,
                delay_s=max(1.0, s.optimove_poll_first_delay_s),
                optimove_execution_id=optimove_execution_id,
            )
            return "not recorded yet, polling later"
    current = item.get("poll_seq")
    if status in ("published", "failed", "unknown") and current is not None and int(current) == attempt:
        # The read that recorded the terminal status, delivered again: it may have died before
        # handing the status on (forwarded with a stable webhook-id, so a repeat is harmless).
        _finish(deps, item)
        return f"already {status}: forwarded again"
    if status not in FOLLOWED:
        return f"nothing to follow: {status}"
    if current is not None and int(current) != attempt:
        return f"stale poll {attempt} (the chain is at {current}): dropped"
    sent_at = float(item.get("sent_at", item["updated_at"]))

    if deps.limiter().acquire(s.optimove_max_inline_wait_s) is None:
        deps.queues.poll(execution_id, attempt=attempt, delay_s=1)
        return "no slot, polling later"
    outcome = deps.client.status(item["optimove_execution_id"])
    failpoint("optimove.poll.after_call")
    now = deps.clock()
    deadline = sent_at + s.optimove_poll_max_s
    delay = next_delay(attempt, deps)
    upstream: str | None = None  # what Optimove said (nothing, when the read failed)
    try:
        if isinstance(outcome, Status):
            report = outcome.report
            if report.status in ("published", "failed"):
                fields: dict[str, Any] = {
                    "upstream_status": report.status,
                    "last_polled_at": now,
                    "polls": attempt,
                }
                if report.status == "published":
                    fields["audience_size"] = report.audience_size
                else:
                    fields["error_code"] = report.error_code or "failed"
                    fields["error_message"] = report.error_message or "Optimove reported the execution failed"
                done = store.transition(
                    table, execution_id, allowed_from=FOLLOWED, to=report.status, now=now, fields=fields
                )
                failpoint("optimove.poll.after_terminal")
                _finish(deps, done)
                return report.status
            upstream = report.status
        elif isinstance(outcome, RateLimited):
            delay = max(delay, outcome.retry_at - now)
        elif isinstance(outcome, Rejected):
            # 401/403/404 on a status read: keep trying until the deadline, remember why.
            upstream = f"http_{outcome.status}"
    except ConditionFailed:
        return "moved on elsewhere"

    if now >= deadline:
        try:
            done = store.transition(
                table,
                execution_id,
                allowed_from=FOLLOWED,
                to="unknown",
                now=now,
                fields={
                    "error_code": "poll_timeout",
                    "error_message": f"no terminal status within {s.optimove_poll_max_s:g}s",
                    "last_polled_at": now,
                    "polls": attempt,
                },
            )
        except ConditionFailed:
            return "moved on elsewhere"
        failpoint("optimove.poll.after_terminal")
        _finish(deps, done)
        return "unknown"
    delay = min(delay, max(0.0, deadline - now))
    if upstream == "processing" and status == "accepted":
        try:
            store.transition(
                table,
                execution_id,
                allowed_from=["accepted"],
                to="processing",
                now=now,
                fields={
                    "upstream_status": "processing",
                    "polls": attempt,
                    "poll_seq": attempt + 1,
                    "last_polled_at": now,
                },
                due=now + delay,
                poll_seq=attempt,
            )
        except ConditionFailed:
            return "another delivery of this poll moved on: dropped"
    elif not store.advance_poll(
        table, execution_id, attempt=attempt, now=now, upstream_status=upstream, next_at=now + delay
    ):
        return "another delivery of this poll moved on: dropped"
    failpoint("optimove.poll.after_advance")
    deps.queues.poll(execution_id, attempt=attempt + 1, delay_s=delay)
    return "polling"


def _record_accepted(
    execution_id: str, attempt: int, optimove_execution_id: str, deps: OptimoveDeps
) -> dict[str, Any] | None:
    """The sender queued this poll with Optimove's execution id and then stopped before recording
    its 202 (it crashed or timed out): record it here, so the run is followed, not lost."""
    now = deps.clock()
    try:
        return store.transition(
            deps.table,
            execution_id,
            allowed_from=["sending"],
            to="accepted",
            now=now,
            fields={
                "optimove_execution_id": optimove_execution_id,
                "upstream_status": "queued",
                "sent_at": now,
                "poll_seq": attempt,
            },
            add={"attempts": 1},  # the sender's call, which it did not live to count
            remove=["last_error"],
            due=now,
            note="202 recorded by the first status poll (the sender stopped after the call)",
        )
    except ConditionFailed:
        return None

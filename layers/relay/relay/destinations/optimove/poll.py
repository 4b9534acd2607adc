"""Following an Optimove execution to a terminal status: one status read per poll message, the
next poll re-queued with a growing SQS delay (nothing sleeps), `unknown` after OPTIMOVE_POLL_MAX_S."""

from __future__ import annotations

from typing import Any

from relay.core.store.table import ConditionFailed
from relay.destinations.optimove import store
from relay.destinations.optimove.client import RateLimited, Rejected, Status
from relay.destinations.optimove.send import OptimoveDeps, _finish

FOLLOWED = ("accepted", "processing")


def next_delay(attempt: int, deps: OptimoveDeps) -> float:
    s = deps.settings
    return min(s.optimove_poll_max_delay_s, s.optimove_poll_first_delay_s * s.optimove_poll_backoff**attempt)


def poll_one(execution_id: str, attempt: int, deps: OptimoveDeps) -> str:
    item = store.get(deps.table, execution_id)
    if not item:
        return "no such execution"
    s, table, status = deps.settings, deps.table, item["status"]
    if status == "sending":
        deps.queues.poll(execution_id, attempt=attempt, delay_s=max(1.0, s.optimove_poll_first_delay_s))
        return "not recorded yet, polling later"
    if status not in FOLLOWED:
        return f"nothing to follow: {status}"
    sent_at = float(item.get("sent_at", item["updated_at"]))

    if deps.limiter().acquire(s.optimove_max_inline_wait_s) is None:
        deps.queues.poll(execution_id, attempt=attempt, delay_s=1)
        return "no slot, polling later"
    outcome = deps.client.status(item["optimove_execution_id"])
    now = deps.clock()
    retry_at = None
    try:
        if isinstance(outcome, Status):
            report = outcome.report
            if report.status in ("published", "failed"):
                fields: dict[str, Any] = {"upstream_status": report.status}
                if report.status == "published":
                    fields["audience_size"] = report.audience_size
                else:
                    fields["error_code"] = report.error_code or "failed"
                    fields["error_message"] = report.error_message or "Optimove reported the execution failed"
                done = store.transition(
                    table, execution_id, allowed_from=FOLLOWED, to=report.status, now=now, fields=fields
                )
                _finish(deps, done)
                return report.status
            if report.status == "processing" and status == "accepted":
                store.transition(
                    table,
                    execution_id,
                    allowed_from=["accepted"],
                    to="processing",
                    now=now,
                    fields={"upstream_status": "processing", "polls": attempt},
                )
            else:
                store.note_poll(table, execution_id, now, report.status, attempt)
        elif isinstance(outcome, RateLimited):
            retry_at = outcome.retry_at
        elif isinstance(outcome, Rejected):
            # 401/403/404 on a status read: keep trying until the deadline, remember why.
            store.note_poll(table, execution_id, now, f"http_{outcome.status}", attempt)
    except ConditionFailed:
        return "moved on elsewhere"

    deadline = sent_at + s.optimove_poll_max_s
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
                },
            )
        except ConditionFailed:
            return "moved on elsewhere"
        _finish(deps, done)
        return "unknown"
    delay = next_delay(attempt, deps)
    if retry_at is not None:
        delay = max(delay, retry_at - now)
    deps.queues.poll(execution_id, attempt=attempt + 1, delay_s=min(delay, max(0.0, deadline - now)))
    return "polling"

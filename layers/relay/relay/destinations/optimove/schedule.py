"""Scheduled Optimove triggers: release the due ones (scheduler), cancel, show as scheduled work."""

from __future__ import annotations

from typing import Any

from relay.core.clock import iso
from relay.core.failpoints import failpoint
from relay.core.store.table import ConditionFailed, Table
from relay.destinations.optimove import store
from relay.destinations.optimove.models import CANCELLABLE
from relay.destinations.optimove.queues import RunQueues
from relay.executions.models import ScheduledItem
from relay.executions.registry import NotCancellable


def release_due(table: Table, queues: RunQueues, now: float, lookahead_s: float) -> int:
    """scheduled -> queued for every trigger due by ``now + lookahead``; each is queued with an
    SQS delay until its send_at, so a scheduler running every minute still fires on time."""
    released = 0
    while True:
        due = store.due(table, iso(now + lookahead_s))
        if not due:
            return released
        progressed = False
        for entry in due:
            execution_id = entry["execution_id"]
            try:
                item = store.transition(
                    table,
                    execution_id,
                    allowed_from=["scheduled"],
                    to="queued",
                    now=now,
                    fields={"released_at": now},
                    remove=["gsi2pk", "gsi2sk"],
                )
            except ConditionFailed:
                continue  # cancelled or released by another run
            progressed = True
            failpoint("optimove.release.after_queued")
            queues.send(execution_id, delay_s=max(0.0, float(item.get("send_at") or now) - now))
            released += 1
        if not progressed:
            return released


def cancel(table: Table, item: dict[str, Any], now: float) -> dict[str, Any]:
    """Cancel a trigger that has not been sent (scheduled, or queued for a slot/retry)."""
    if item.get("status") not in CANCELLABLE:
        raise NotCancellable(f"execution is {item.get('status')}; it can no longer be cancelled")
    try:
        return store.transition(
            table,
            item["execution_id"],
            allowed_from=CANCELLABLE,
            to="cancelled",
            now=now,
            fields={"cancel_requested_at": now},
            remove=["gsi2pk", "gsi2sk"],
        )
    except ConditionFailed as exc:
        current = store.get(table, item["execution_id"]) or {}
        raise NotCancellable(f"execution is {current.get('status')}; it can no longer be cancelled") from exc


def scheduled(item: dict[str, Any]) -> ScheduledItem | None:
    if item.get("send_at") is None:
        return None
    return ScheduledItem(
        execution_id=item["execution_id"],
        destination=item["destination"],
        status=item.get("status", ""),
        run_at=iso(float(item["send_at"])),
        details={"event_generator_id": item.get("event_generator_id"), "topic_key": item.get("topic_key")},
    )

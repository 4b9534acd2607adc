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
            if release_one(table, queues, entry["execution_id"], now):
                progressed = True
                released += 1
        if not progressed:
            return released


def release_one(table: Table, queues: RunQueues, execution_id: str, now: float) -> bool:
    """Queue the run's send message first (delayed until send_at), then leave the schedule index:
    a crash between the two leaves it `scheduled` and listed, so the next scheduler run queues it
    again (a second message is harmless: the send is guarded by its status), and the message that
    arrives first moves it to `queued` itself. False: no longer scheduled (cancelled, released)."""
    item = store.get(table, execution_id)
    if not item or item.get("status") != "scheduled":
        return False
    send_at = float(item.get("send_at") or now)
    queues.send(execution_id, delay_s=max(0.0, send_at - now))
    failpoint("optimove.release.after_enqueue")
    try:
        store.transition(
            table,
            execution_id,
            allowed_from=["scheduled"],
            to="queued",
            now=now,
            fields={"released_at": now},
            due=max(now, send_at),
        )
    except ConditionFailed:
        return False  # cancelled meanwhile, or its message came first and released it
    return True


def cancel(table: Table, item: dict[str, Any], now: float) -> dict[str, Any]:
    """Cancel a trigger that has not been sent (scheduled, or queued for a slot/retry), giving up
    its de-duplication key in the same write: the same event may then be triggered again."""
    if item.get("status") not in CANCELLABLE:
        raise NotCancellable(f"execution is {item.get('status')}; it can no longer be cancelled")
    try:
        cancelled = store.cancel_releasing_dedupe(
            table,
            item["execution_id"],
            allowed_from=CANCELLABLE,
            now=now,
            dedupe_hash=item.get("dedupe_hash"),
            fields={"cancel_requested_at": now},
        )
    except ConditionFailed as exc:
        current = store.get(table, item["execution_id"]) or {}
        raise NotCancellable(f"execution is {current.get('status')}; it can no longer be cancelled") from exc
    failpoint("optimove.cancel.after_cancelled")
    return cancelled


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

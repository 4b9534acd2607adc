"""Scheduled Optimove triggers: release the due ones (scheduler), cancel, list every schedule."""

from __future__ import annotations

from typing import Any

from relay.clock import iso
from relay.models.optimove import CANCELLABLE, ScheduledItem
from relay.optimove_queues import OptimoveQueues
from relay.store import optimove as store
from relay.store import schedules
from relay.store.table import ConditionFailed, Table


def release_due(table: Table, queues: OptimoveQueues, now: float, lookahead_s: float) -> int:
    """scheduled -> queued for every trigger due by ``now + lookahead``; each is queued with an
    SQS delay until its send_at, so a scheduler running every minute still fires on time."""
    released = 0
    while True:
        due = schedules.due(table, iso(now + lookahead_s))
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
            queues.send(execution_id, delay_s=max(0.0, float(item.get("send_at") or now) - now))
            released += 1
        if not progressed:
            return released


class NotCancellableOptimove(Exception):
    pass


def cancel(table: Table, item: dict[str, Any], now: float) -> dict[str, Any]:
    """Cancel a trigger that has not been sent (scheduled, or queued for a slot/retry)."""
    if item.get("status") not in CANCELLABLE:
        raise NotCancellableOptimove(f"execution is {item.get('status')}; it can no longer be cancelled")
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
        raise NotCancellableOptimove(
            f"execution is {current.get('status')}; it can no longer be cancelled"
        ) from exc


def list_scheduled(table: Table, from_ts: float, to_ts: float, *, limit: int = 500) -> list[ScheduledItem]:
    """Work with a run time in [from, to], of every destination, soonest first."""
    found: list[ScheduledItem] = []
    for item in schedules.with_run_time(table, from_ts, to_ts, iso(to_ts)):
        if item.get("destination") == "optimove":
            run_at = float(item["send_at"])
            details = {
                "event_generator_id": item.get("event_generator_id"),
                "topic_key": item.get("topic_key"),
            }
            status = item.get("status", "")
        else:
            schedule = item.get("schedule") or {}
            run_at = float(schedule["start_at"])
            details = {"group_id": item.get("group_id"), "campaign_uuid": schedule.get("campaign_uuid")}
            from relay.flows.executions import derive_status

            status = derive_status(item)
        found.append(
            ScheduledItem(
                execution_id=item["execution_id"],
                destination=item.get("destination", "optimized"),
                status=status,
                run_at=iso(run_at),
                details=details,
            )
        )
        if len(found) >= limit:
            break
    return sorted(found, key=lambda s: s.run_at)

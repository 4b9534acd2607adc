"""Moving on Optimove runs that nothing in flight will move (the reconciler, every minute).

A run under way is on gsi2 (``DUE#optimove``) by when its next step is due: its send message's
delivery (`queued`), its call's end (`sending`), its next status read (`accepted`, `processing`).
Overdue by RELAY_RECONCILE_AFTER_S, its message was lost between two side effects (a crash after a
write, before the enqueue). Every repair is safe to repeat: a second send message is harmless (the
send is guarded by `queued -> sending`, so Optimove is never called twice), a second poll too (the
chain moves on by a conditional write on ``poll_seq``); each repair moves the run's due time on, so
the next reconciler run leaves it alone while the repair is in flight.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.clock import iso
from relay.destinations.optimove import store
from relay.destinations.optimove.schedule import release_one
from relay.destinations.optimove.send import OptimoveDeps, settle_interrupted

logger = Logger(child=True)

FOLLOWED = ("accepted", "processing")


def reconcile(deps: OptimoveDeps, now: float, stale_before: float) -> dict[str, int]:
    repairs: Counter[str] = Counter()
    table, queues = deps.table, deps.queues
    # Scheduled runs long past due: the scheduler's release never got them to the queue.
    for entry in store.due(table, iso(stale_before)):
        if release_one(table, queues, entry["execution_id"], now):
            repairs["OptimoveScheduledReleased"] += 1
    for entry in store.overdue(table, stale_before):
        execution_id = entry["execution_id"]
        item = store.get(table, execution_id)
        if not item or float(item.get("due_at") or now) >= stale_before:
            continue  # moved on since the index was read
        kind = repair(deps, item, now, stale_before)
        if kind:
            repairs[kind] += 1
            extra = {"execution_id": execution_id, "status": item["status"], "repair": kind}
            logger.warning("optimove run repaired", extra=extra)
    return dict(repairs)


def repair(deps: OptimoveDeps, item: dict[str, Any], now: float, stale_before: float) -> str | None:
    execution_id, status = item["execution_id"], item["status"]
    # The due time moves on first, then the message: a crash between the two is repaired again.
    if status == "queued":
        store.touch_due(deps.table, execution_id, "queued", now, repair=True)
        deps.queues.send(execution_id)
        return "OptimoveRunsRequeued"
    if status == "sending":
        # Never a send that may still be under way, however short RELAY_RECONCILE_AFTER_S is.
        alive_s = deps.settings.record_budget_ms() / 1000
        if float(item.get("sending_at") or now) >= min(stale_before, now - alive_s):
            return None
        return "OptimoveSendsSettledUnknown" if settle_interrupted(execution_id, deps) else None
    if status in FOLLOWED:
        attempt = int(item.get("poll_seq") or int(item.get("polls") or 0) + 1)
        store.touch_due(deps.table, execution_id, status, now, repair=True)
        deps.queues.poll(execution_id, attempt=attempt, delay_s=0)
        return "OptimovePollsRequeued"
    if status == "scheduled":
        return None
    store.leave_due(deps.table, execution_id)  # finished: only its index entry was left behind
    return "OptimoveDueEntriesCleared"

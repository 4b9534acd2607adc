"""Optimove API-triggered campaigns: one run per trigger, polled to a terminal status, within the
brand's requests per second; scheduling, de-duplication and context schemas added by the relay.

Registered with the executions registry (see ``relay.destinations``); everything heavy is imported
inside the methods.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, ExecutionView, ScheduledItem
from relay.executions.registry import Destination, Emit

NAME = "optimove"


class Optimove(Destination):
    name = NAME
    statuses = (
        "scheduled",
        "queued",
        "sending",
        "accepted",
        "processing",
        "published",
        "failed",
        "unknown",
        "dead_lettered",
        "cancelled",
    )
    in_progress = ("scheduled", "queued", "sending", "accepted", "processing")
    dead_letter_queues = {"optimove": "OPTIMOVE_DLQ_URL", "poll": "POLL_DLQ_URL"}

    def view_model(self) -> type[ExecutionView]:
        from relay.destinations.optimove.view import OptimoveExecutionView

        return OptimoveExecutionView

    def view(self, table: Table, item: dict[str, Any], *, details: bool) -> ExecutionView:
        from relay.destinations.optimove.view import optimove_view

        return optimove_view(item)

    def cancel(self, table: Table, item: dict[str, Any], now: float) -> ExecutionView:
        from relay.destinations.optimove.schedule import cancel
        from relay.destinations.optimove.view import optimove_view

        return optimove_view(cancel(table, item, now))

    def scheduled(self, item: dict[str, Any]) -> ScheduledItem | None:
        from relay.destinations.optimove.schedule import scheduled

        return scheduled(item)

    def status(self, table: Table, now: float) -> DestinationStatus:
        from relay.destinations.optimove import status

        return status.status(table, self.name)

    def handle(self, message: dict[str, Any], *, remaining_ms: Callable[[], int], emit: Emit) -> str:
        """``send``: run the campaign (one slot, one call); ``poll``: read its status once."""
        from relay.destinations.optimove import wiring

        deps = wiring.deps(emit)
        execution_id = message["execution_id"]
        if remaining_ms() < deps.settings.record_budget_ms():
            # Too little time left for this record's slot wait, call and record: it is not
            # started, but handed back as a fresh message (the invocation would time out in the
            # middle and SQS redeliver the whole batch, records done included).
            if message.get("kind") == "poll":
                deps.queues.poll(
                    execution_id,
                    attempt=int(message.get("attempt", 1)),
                    delay_s=0,
                    optimove_execution_id=message.get("optimove_execution_id"),
                )
            else:
                deps.queues.send(execution_id)
            emit("OptimoveRecordsDeferred", 1)
            return "deferred: too little time left in this invocation"
        if message.get("kind") == "poll":
            from relay.destinations.optimove.poll import poll_one

            outcome = poll_one(
                execution_id,
                int(message.get("attempt", 1)),
                deps,
                optimove_execution_id=message.get("optimove_execution_id"),
            )
            if outcome in ("published", "failed", "unknown"):
                emit(f"OptimoveExecutions_{outcome}", 1)
            return outcome
        from relay.destinations.optimove.send import send_one

        return send_one(execution_id, deps)

    def release_due(self, now: float, emit: Emit) -> int:
        from relay.core import wiring as core
        from relay.destinations.optimove import wiring
        from relay.destinations.optimove.schedule import release_due
        from relay.destinations.optimove.settings import get_settings

        lookahead_s = get_settings().optimove_scheduler_lookahead_s
        released = release_due(core.table(), wiring.run_queues(), now, lookahead_s)
        if released:
            emit("OptimoveTriggersReleased", released)
        return released

    def reconcile(self, now: float, stale_before: float, emit: Emit) -> dict[str, int]:
        """Runs under way that nothing in flight moves on any more: overdue `queued` runs are
        queued again, overdue polls too, a `sending` whose worker died is settled `unknown`, and
        scheduled runs whose release never reached the queue are released."""
        from relay.destinations.optimove import wiring
        from relay.destinations.optimove.reconcile import reconcile

        return reconcile(wiring.reconcile_deps(emit), now, stale_before)

    def redrive(self, message: dict[str, Any], now: float) -> str:
        from relay.destinations.optimove.redrive import redrive

        return redrive(message, now)


DESTINATION = Optimove()

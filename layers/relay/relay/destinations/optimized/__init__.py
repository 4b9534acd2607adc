"""Optimized.app: profiles in batches of at most 50 per group, 10 batch requests a minute per group.

Registered with the executions registry (see ``relay.destinations``); everything heavy is imported
inside the methods, so the API's cold start does not pay for the dispatcher or the HTTP client.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, ExecutionView, ScheduledItem
from relay.executions.registry import Destination, Emit

NAME = "optimized"


class Optimized(Destination):
    name = NAME
    statuses = (
        "queued",
        "dispatching",
        "scheduled",
        "completed",
        "partially_cancelled",
        "partially_failed",
        "failed",
        "cancelled",
    )
    in_progress = ("queued", "dispatching")
    dead_letter_queues = {"dispatch": "DISPATCH_DLQ_URL"}

    def view_model(self) -> type[ExecutionView]:
        from relay.destinations.optimized.executions import OptimizedExecutionView

        return OptimizedExecutionView

    def view(self, table: Table, item: dict[str, Any], *, details: bool) -> ExecutionView:
        from relay.destinations.optimized import executions

        return executions.get(table, item, details=details)

    def cancel(self, table: Table, item: dict[str, Any], now: float) -> ExecutionView:
        from relay.destinations.optimized import executions

        return executions.cancel(table, item, now)

    def scheduled(self, item: dict[str, Any]) -> ScheduledItem | None:
        from relay.destinations.optimized import executions

        return executions.scheduled(item)

    def status(self, table: Table, now: float) -> DestinationStatus:
        from relay.destinations.optimized import status

        return status.status(table, self.name, now)

    def handle(self, message: dict[str, Any], *, remaining_ms: Callable[[], int], emit: Emit) -> str:
        """A wake-up: dispatch the group until it is idle, must wait, or time runs short."""
        from relay.destinations.optimized import wiring
        from relay.destinations.optimized.dispatcher import GroupDispatcher

        dispatcher = GroupDispatcher(
            message["group_id"], wiring.dispatch_deps(emit), early_s=float(message.get("early_s", 0))
        )
        return dispatcher.run(remaining_ms)

    def reconcile(self, now: float, stale_before: float, emit: Emit) -> dict[str, int]:
        from relay.core import wiring as core
        from relay.destinations.optimized import reconcile, wiring

        return reconcile.reconcile(core.table(), wiring.wakeups(), now, stale_before)

    def redrive(self, message: dict[str, Any], now: float) -> str:
        from relay.destinations.optimized.redrive import redrive

        return redrive(message, now)


DESTINATION = Optimized()

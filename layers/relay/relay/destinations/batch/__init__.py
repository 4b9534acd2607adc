"""Batch.com (CEP API 2.x): profile updates packed into calls of at most 200 operations within the
updates limiter, partial errors mapped back to the caller's operations, and (``audiences/``)
custom-id audiences through the project's 1 request/s limiter.

Registered with the executions registry (see ``relay.destinations``); everything heavy is imported
inside the methods, so the API's cold start does not pay for the dispatcher or the HTTP client.
Queue messages (``{"destination": "batch", "kind": ...}``) are dispatched on their kind in
:meth:`Batch.handle`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, ExecutionView
from relay.executions.registry import Destination, Emit

NAME = "batch"

# Kinds of queue message on the Batch queue. Audience kinds (create, update, replace, remove,
# follow the indexing) are added by the audiences part, each handled in ``audiences/``.
WAKE = "wake"  # "the project has pending profile operations"
DEAD_CHUNK = "dead_chunk"  # parked in the DLQ after its retries (relay dlq redrive)


class Batch(Destination):
    name = NAME
    statuses = ("queued", "dispatching", "completed", "partially_failed", "failed", "cancelled")
    in_progress = ("queued", "dispatching")
    dead_letter_queues = {"batch": "BATCH_DLQ_URL"}

    def view_model(self) -> type[ExecutionView]:
        from relay.destinations.batch.executions import BatchExecutionView

        return BatchExecutionView

    def view(self, table: Table, item: dict[str, Any], *, details: bool) -> ExecutionView:
        from relay.destinations.batch import executions

        return executions.get(table, item, details=details)

    def cancel(self, table: Table, item: dict[str, Any], now: float) -> ExecutionView:
        from relay.destinations.batch import executions

        return executions.cancel(table, item, now)

    def status(self, table: Table, now: float) -> DestinationStatus:
        from relay.destinations.batch import status

        return status.status(table, self.name, now)

    def handle(self, message: dict[str, Any], *, remaining_ms: Callable[[], int], emit: Emit) -> str:
        kind = message.get("kind")
        if kind == WAKE:
            from relay.destinations.batch import wiring
            from relay.destinations.batch.dispatcher import ProfileDispatcher

            return ProfileDispatcher(wiring.dispatch_deps(emit)).run(remaining_ms)
        # Audience kinds plug in here: ``if kind in audiences.KINDS: return audiences.handle(...)``.
        raise ValueError(f"batch handles no message of kind {kind!r}")

    def reconcile(self, now: float, stale_before: float, emit: Emit) -> dict[str, int]:
        from relay.core import wiring as core
        from relay.destinations.batch import reconcile, wiring

        # Audience work that could wait forever is reconciled by the audiences part next to this.
        return reconcile.reconcile(core.table(), wiring.queue(), now, stale_before)

    def redrive(self, message: dict[str, Any], now: float) -> str:
        from relay.destinations.batch.redrive import redrive

        return redrive(message, now)


DESTINATION = Batch()

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
from relay.executions.models import DestinationStatus, ExecutionView, ResultMirror
from relay.executions.registry import Destination, Emit, NotCancellable

NAME = "batch"

# Kinds of queue message on the Batch queue.
WAKE = "wake"  # "the project has pending profile operations"
DEAD_CHUNK = "dead_chunk"  # parked in the DLQ after its retries (relay dlq redrive)
# An audience write's next calls / one read of its indexing state (``audiences/``).
AUDIENCE_KINDS = ("audience_write", "audience_poll")
# What an execution item of an audience write says beside its destination.
AUDIENCE = "audience"
PROFILE_STATUSES = ("queued", "dispatching", "completed", "partially_failed", "failed", "cancelled")
AUDIENCE_STATUSES = (
    "queued",
    "sending",
    "indexing",
    "applied",
    "removed",
    "unconfirmed",
    "failed",
    "ambiguous",
)


def is_audience(item: dict[str, Any]) -> bool:
    return item.get("batch_kind") == AUDIENCE


class Batch(Destination):
    name = NAME
    statuses = tuple(dict.fromkeys(PROFILE_STATUSES + AUDIENCE_STATUSES))
    in_progress = ("queued", "dispatching", "sending", "indexing")
    dead_letter_queues = {"batch": "BATCH_DLQ_URL"}

    def view_model(self) -> type[ExecutionView]:
        """Profile updates' view or an audience write's (a union: the executions routes list
        every destination's models)."""
        from relay.destinations.batch.audiences.view import AudienceExecutionView
        from relay.destinations.batch.executions import BatchExecutionView

        return BatchExecutionView | AudienceExecutionView  # type: ignore[return-value]

    def view(self, table: Table, item: dict[str, Any], *, details: bool) -> ExecutionView:
        if is_audience(item):
            from relay.destinations.batch.audiences.view import audience_view

            return audience_view(item)
        from relay.destinations.batch import executions

        return executions.get(table, item, details=details)

    def cancel(self, table: Table, item: dict[str, Any], now: float) -> ExecutionView:
        if is_audience(item):
            raise NotCancellable(
                "audience writes are applied in the order they were accepted; send another write"
            )
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
        if kind in AUDIENCE_KINDS:
            from relay.destinations.batch.audiences import wiring as audiences
            from relay.destinations.batch.audiences.handler import handle

            return handle(message, audiences.deps(emit), remaining_ms)
        raise ValueError(f"batch handles no message of kind {kind!r}")

    def reconcile(self, now: float, stale_before: float, emit: Emit) -> dict[str, int]:
        from relay.core import wiring as core
        from relay.destinations.batch import reconcile, wiring
        from relay.destinations.batch.audiences import reconcile as audiences
        from relay.destinations.batch.audiences import wiring as audience_wiring

        repairs = reconcile.reconcile(core.table(), wiring.queue(), now, stale_before)
        deps = audience_wiring.deps(emit, with_client=False)
        return repairs | audiences.reconcile(deps, now, stale_before)

    def redrive(self, message: dict[str, Any], now: float) -> str:
        if message.get("kind") in AUDIENCE_KINDS:
            # Both are guarded by the write's state: queued again, a repeat is harmless.
            from relay.destinations.batch import wiring

            wiring.queue().send({k: v for k, v in message.items() if k != "reason"})
            return f"{message['kind']} of {message.get('execution_id')} queued again"
        from relay.destinations.batch.redrive import redrive

        return redrive(message, now)

    # --- Optimized.app results mirrored onto Batch profiles (``mirror.py``) ---------------------

    def kept_profile_attributes(self) -> tuple[str, ...]:
        from relay.destinations.batch.settings import get_settings

        s = get_settings()
        attribute = s.custom_id_attribute() if s.batch_mirror_results else None
        return (attribute,) if attribute else ()

    def mirror_plan(self, result: dict[str, Any], profile_attributes: dict[str, Any]) -> ResultMirror | None:
        from relay.destinations.batch import mirror
        from relay.destinations.batch.settings import get_settings

        return mirror.plan(result, profile_attributes, get_settings())

    def mirror_results(self, results: list[dict[str, Any]], emit: Emit) -> None:
        import time

        from relay.destinations.batch import mirror
        from relay.destinations.batch.settings import get_settings

        mirror.mirror(results, get_settings(), time.time(), emit)


DESTINATION = Batch()

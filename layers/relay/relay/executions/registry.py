"""The destination registry: generic code asks it, and never names a destination.

A destination is a :class:`Destination` registered once (``relay.destinations`` lists them all).
It says how its executions are viewed, cancelled and listed as scheduled work, and how its queue
messages (``{"destination": name, "kind": ...}``) are handled and re-driven. Implementations
import their heavy modules inside the methods, so registering costs nothing at cold start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, ExecutionView, ScheduledItem

Emit = Callable[[str, float], None]
# The key a message parked by the relay carries (``Queue.dead_letter``): why it was given up on.
PARKED = "reason"


class NotCancellable(Exception):
    pass


class UnknownDestination(Exception):
    pass


class Destination:
    name: str = ""
    statuses: tuple[str, ...] = ()
    # Statuses in which the relay still has work to do for an execution (`relay watch` waits
    # while an execution is in one): every other status is where it ended.
    in_progress: tuple[str, ...] = ()
    # Its dead-letter queues for `relay dlq` and `relay status`: a short label -> the env var holding
    # the queue's URL (its work queue's is the same name with _QUEUE_URL: see ``work_queue_env``).
    dead_letter_queues: dict[str, str] = {}

    def view_model(self) -> type[ExecutionView]:
        """The model of :meth:`view`'s answer (for the OpenAPI document)."""
        return ExecutionView

    def view(self, table: Table, item: dict[str, Any], *, details: bool) -> ExecutionView:
        """The execution as the API shows it; ``details``: with its parts (chunks, ...)."""
        raise NotImplementedError

    def cancel(self, table: Table, item: dict[str, Any], now: float) -> ExecutionView:
        """Cancel what has not been sent; NotCancellable when nothing can be."""
        raise NotImplementedError

    def scheduled(self, item: dict[str, Any]) -> ScheduledItem | None:
        """The execution as an entry of ``GET /v1/schedules``, if it has a run time."""
        return None

    def status(self, table: Table, now: float) -> DestinationStatus:
        """What waits right now and how much of each limiter's window is used (`GET /v1/status`,
        `relay status`): read from the table, lean (a few queries), never a scan."""
        return DestinationStatus(destination=self.name)

    def handle(self, message: dict[str, Any], *, remaining_ms: Callable[[], int], emit: Emit) -> str:
        """One queue message of this destination (a worker calls it); returns what happened."""
        raise NotImplementedError(f"{self.name} handles no queue messages")

    def release_due(self, now: float, emit: Emit) -> int:
        """Move scheduled work that is due onto its queue (the scheduler calls it every minute)."""
        return 0

    def reconcile(self, now: float, stale_before: float, emit: Emit) -> dict[str, int]:
        """Move on this destination's work left untouched since ``stale_before`` with nothing in
        flight to move it (the reconciler calls it every minute). Returns repairs by kind; every
        repair must be safe to repeat (a duplicate wake-up or message is harmless)."""
        return {}

    def process(self, message: dict[str, Any], *, remaining_ms: Callable[[], int], emit: Emit) -> str:
        """What a worker calls for each message of this destination. A message that carries a
        ``reason`` was parked in a dead-letter queue by the relay and moved back by an operator
        (SQS's message-move task, `relay dlq redrive`): it is re-driven, not handled as new."""
        if PARKED in message:
            return self.redrive(message, time.time())
        return self.handle(message, remaining_ms=remaining_ms, emit=emit)

    def redrive(self, message: dict[str, Any], now: float) -> str:
        """Act on one dead-lettered message of this destination (`relay dlq redrive`)."""
        raise ValueError(f"cannot re-drive a message of kind {message.get('kind')!r}")


def work_queue_env(dead_letter_env: str) -> str:
    """The env var of the work queue a dead-letter queue belongs to (DISPATCH_DLQ_URL ->
    DISPATCH_QUEUE_URL)."""
    return dead_letter_env.replace("_DLQ_URL", "_QUEUE_URL")


_registered: dict[str, Destination] = {}


def register(destination: Destination) -> Destination:
    _registered[destination.name] = destination
    return destination


def get(name: str | None) -> Destination:
    try:
        return _registered[str(name)]
    except KeyError:
        raise UnknownDestination(f"no destination {name!r} is registered") from None


def every() -> list[Destination]:
    return list(_registered.values())


def statuses() -> tuple[str, ...]:
    """Every status any destination uses, for filters."""
    return tuple(dict.fromkeys(s for d in _registered.values() for s in d.statuses))

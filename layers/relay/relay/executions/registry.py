"""The destination registry: generic code asks it, and never names a destination.

A destination is a :class:`Destination` registered once (``relay.destinations`` lists them all).
It says how its executions are viewed, cancelled and listed as scheduled work, how its queue
messages (``{"destination": name, "kind": ...}``) are handled and re-driven, and whether it
mirrors the results another destination's sends cause (:meth:`Destination.mirror_plan`). Implementations
import their heavy modules inside the methods, so registering costs nothing at cold start.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from relay.core.store.table import Table
from relay.executions.models import DestinationStatus, ExecutionView, ResultMirror, ScheduledItem

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

    # --- Mirroring results (a destination that copies campaign results onto its own profiles) ---

    def kept_profile_attributes(self) -> tuple[str, ...]:
        """Names of input-profile attributes this destination needs when it mirrors a result: the
        destination that sends the profiles keeps them on each profile's result link."""
        return ()

    def mirror_plan(self, result: dict[str, Any], profile_attributes: dict[str, Any]) -> ResultMirror | None:
        """How this destination mirrors a result about to be recorded (the result's view and its
        input profile's kept attributes), or None when it does not. No I/O: the plan is stored
        with the result, in the transaction that records it."""
        return None

    def mirror_results(self, results: list[dict[str, Any]], emit: Emit) -> None:
        """Carry out the plans (``result["mirrors"]``, this destination's says ``mirrored``) of
        recorded results. Called after each recording and again after a crash or a redelivery:
        must be safe to repeat."""


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


def kept_profile_attributes() -> tuple[str, ...]:
    """Every input-profile attribute a destination that mirrors results needs, in a stable order."""
    return tuple(dict.fromkeys(name for d in _registered.values() for name in d.kept_profile_attributes()))


def mirror_plans(result: dict[str, Any], profile_attributes: dict[str, Any]) -> list[ResultMirror]:
    """Every registered destination's plan for a result."""
    plans = (d.mirror_plan(result, profile_attributes) for d in _registered.values())
    return [plan for plan in plans if plan is not None]


def mirror(results: list[dict[str, Any]], emit: Emit) -> None:
    """Carry out the stored plans of recorded results, each destination with its own (a skipped
    plan has nothing to carry out)."""
    by_destination: dict[str, list[dict[str, Any]]] = {}
    for result in results:
        for plan in result.get("mirrors") or []:
            if plan.get("status") == "mirrored":
                by_destination.setdefault(plan["destination"], []).append(result)
    for name, planned in by_destination.items():
        get(name).mirror_results(planned, emit)


def statuses() -> tuple[str, ...]:
    """Every status any destination uses, for filters."""
    return tuple(dict.fromkeys(s for d in _registered.values() for s in d.statuses))

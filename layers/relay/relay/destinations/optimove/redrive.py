"""Re-driving what reached the Optimove dead-letter queues (`relay dlq redrive`).

Sends and polls whose handler kept failing (SQS's redrive policy) are simply queued again: both
are guarded by the execution's status, so a second message is harmless. A run the sender parked
after its last attempt (`dead_send`) goes back to `queued` with its attempts reset, then queued.
"""

from __future__ import annotations

from typing import Any

from relay.core import wiring as core
from relay.core.store.table import ConditionFailed
from relay.destinations.optimove import store, wiring


def redrive(message: dict[str, Any], now: float) -> str:
    kind, execution_id = message.get("kind"), message.get("execution_id")
    queues = wiring.run_queues()
    if kind == "send":
        queues.send(execution_id)
        return f"send of {execution_id} queued again"
    if kind == "poll":
        queues.poll(
            execution_id,
            attempt=int(message.get("attempt", 1)),
            delay_s=0,
            optimove_execution_id=message.get("optimove_execution_id"),
        )
        return f"poll of {execution_id} queued again"
    if kind == "dead_send":
        try:
            store.transition(
                core.table(),
                execution_id,
                allowed_from=["dead_lettered"],
                to="queued",
                now=now,
                fields={"attempts": 0},
                note="re-driven from the dead-letter queue",
            )
        except ConditionFailed:
            return f"run {execution_id} is no longer dead-lettered; dropped"
        queues.send(execution_id)
        return f"run {execution_id} back to queued"
    raise ValueError(f"cannot re-drive a message of kind {kind!r}")

"""Re-driving what reached the dispatch dead-letter queue (`relay dlq redrive`).

Two kinds of message land there: wake-ups whose handler kept failing (SQS's redrive policy) and
chunks the dispatcher parked after exhausting their attempts. A wake-up is simply sent again; a
parked chunk goes back to pending (attempts reset) and its group is woken.
"""

from __future__ import annotations

from typing import Any

from relay.core import wiring as core
from relay.destinations.optimized import store, wiring


def redrive(message: dict[str, Any], now: float) -> str:
    """Act on one dead-letter message; returns what was done (for the operator's log)."""
    kind = message.get("kind")
    if kind == "wake":
        wiring.wakeups().wake(message["group_id"])
        return f"woke group {message['group_id']}"
    if kind == "dead_chunk":
        chunk = store.requeue_dead_chunk(core.table(), message["execution_id"], int(message["seq"]), now)
        if chunk is None:
            return f"chunk {message['execution_id']}/{message['seq']} is no longer dead-lettered; dropped"
        store.arm(core.table(), chunk["group_id"], int(chunk["profile_count"]), now)
        wiring.wakeups().wake(chunk["group_id"])
        return f"chunk {message['execution_id']}/{message['seq']} back to pending"
    raise ValueError(f"cannot re-drive a message of kind {kind!r}")

"""Re-driving what reached the Batch dead-letter queue (`relay dlq redrive`): a wake-up is sent
again; a chunk parked after its retries goes back to pending (attempts reset) and the lane is
woken."""

from __future__ import annotations

import time
from typing import Any

from relay.core import wiring as core
from relay.destinations.batch import DEAD_CHUNK, WAKE, store, wiring
from relay.destinations.batch.wakeups import wake


def redrive(message: dict[str, Any], now: float) -> str:
    kind = message.get("kind")
    if kind == WAKE:
        wake(wiring.queue())
        return "woke the Batch dispatcher"
    if kind == DEAD_CHUNK:
        execution_id, seq = message["execution_id"], int(message["seq"])
        chunk = store.requeue_dead_chunk(core.table(), execution_id, seq)
        if chunk is None:
            return f"chunk {execution_id}/{seq} is no longer dead-lettered; dropped"
        store.arm(core.table(), chunk["group_id"], now or time.time())
        wake(wiring.queue())
        return f"chunk {execution_id}/{seq} back to pending"
    raise ValueError(f"cannot re-drive a Batch message of kind {kind!r}")

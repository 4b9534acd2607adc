"""Re-driving what reached the dispatch dead-letter queue (used by the `relay-dlq` command).

Two kinds of message land there: wake-ups whose handler kept failing (SQS's redrive policy) and
chunks the dispatcher parked after exhausting their attempts. A wake-up is simply sent again; a
parked chunk goes back to pending (attempts reset) and its group is woken.
"""

from __future__ import annotations

import json
from typing import Any

from relay.queues import WakeQueue
from relay.store import dispatch as dispatch_store
from relay.store.table import Table


def describe(body: str) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError:
        return {"kind": "unreadable", "body": body[:200]}
    return message if isinstance(message, dict) else {"kind": "unreadable", "body": body[:200]}


def redrive(body: str, *, table: Table, queue: WakeQueue, now: float) -> str:
    """Act on one dead-letter message; returns what was done (for the operator's log)."""
    message = describe(body)
    kind = message.get("kind")
    if kind == "wake":
        queue.wake(message["group_id"])
        return f"woke group {message['group_id']}"
    if kind == "dead_chunk":
        chunk = dispatch_store.requeue_dead_chunk(table, message["execution_id"], int(message["seq"]), now)
        if chunk is None:
            return f"chunk {message['execution_id']}/{message['seq']} is no longer dead-lettered; dropped"
        dispatch_store.arm(table, chunk["group_id"], int(chunk["profile_count"]), now)
        queue.wake(chunk["group_id"])
        return f"chunk {message['execution_id']}/{message['seq']} back to pending"
    raise ValueError(f"cannot re-drive a message of kind {kind!r}")

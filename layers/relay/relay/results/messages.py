"""The ResultsQueue's "record" message: an event to link, store, count and forward.

Each message carries a ``token`` of its own, kept across SQS redeliveries of that message: the
ledger remembers which message recorded an event, so only that message (or a redelivery of it)
forwards the result, and the extra copies that a platform retry or the reconciler queues are
dropped once the event is recorded. The event travels in the message when it is small; otherwise
(and when the reconciler re-queues it) the deliver worker reads it from the ledger.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

# Events at most this large (as JSON) travel in their message: ten of them stay well inside one
# SendMessageBatch call's 256 KiB.
INLINE_EVENT_BYTES = 16_384


def record_message(
    source: str, event_id: str, *, event: dict[str, Any] | None = None, received_at: str | None = None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "kind": "record",
        "source": source,
        "event_id": event_id,
        "token": uuid.uuid4().hex,
    }
    small = event is not None and len(json.dumps(event, separators=(",", ":"))) <= INLINE_EVENT_BYTES
    if small and received_at is not None:
        message |= {"received_at": received_at, "event": event}
    return message


def unparked(message: dict[str, Any]) -> dict[str, Any]:
    """A message the relay parked in the dead-letter queue, ready to be queued again: without its
    reason, and a forward retry with its attempts reset."""
    kept = {k: v for k, v in message.items() if k != "reason"}
    if kept.get("kind") == "forward":
        kept["attempt"] = 1
    return kept

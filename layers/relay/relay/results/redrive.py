"""Re-driving what reached the results dead-letter queue (`relay dlq redrive`)."""

from __future__ import annotations

from typing import Any

from relay.results import wiring
from relay.results.messages import unparked


def redrive(message: dict[str, Any]) -> str:
    """`relay dlq redrive` of a results message: queued again, its forwarding attempts reset."""
    kept = unparked(message)
    wiring.queue().send(kept)
    return f"result {kept.get('event_id') or (kept.get('result') or {}).get('event_id')} queued again"

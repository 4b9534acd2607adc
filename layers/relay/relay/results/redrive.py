"""Re-driving what reached the results dead-letter queue (`relay-dlq redrive`)."""

from __future__ import annotations

from typing import Any

from relay.results import wiring


def redrive(message: dict[str, Any]) -> str:
    """`relay-dlq redrive` of a results message: queued again, its forwarding attempts reset."""
    kept = {k: v for k, v in message.items() if k != "reason"}
    if kept.get("kind") == "forward":
        kept["attempt"] = 1
    wiring.queue().send(kept)
    return f"result {kept.get('event_id') or (kept.get('result') or {}).get('event_id')} queued again"

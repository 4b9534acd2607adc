"""The audience messages of the Batch queue, as the destination's ``handle`` hands them on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from relay.destinations.batch.audiences.queues import POLL, WRITE

KINDS = frozenset({WRITE, POLL})


def handle(message: dict[str, Any], deps: Any, remaining_ms: Callable[[], int]) -> str:
    execution_id = message["execution_id"]
    if message["kind"] == POLL:
        from relay.destinations.batch.audiences.poll import poll_once

        return poll_once(execution_id, int(message.get("attempt", 1)), deps)
    from relay.destinations.batch.audiences.send import apply_write

    return apply_write(execution_id, deps, remaining_ms)

"""The Batch queue's wake-up: "the project has pending profile operations" (the work itself
waits in DynamoDB)."""

from __future__ import annotations

from relay.core.queue import Queue
from relay.destinations.batch import NAME, WAKE


def wake(queue: Queue, *, delay_s: float = 0) -> None:
    queue.send({"kind": WAKE, "destination": NAME}, delay_s=delay_s)

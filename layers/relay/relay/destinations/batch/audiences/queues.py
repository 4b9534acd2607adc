"""The messages of audience writes, on the Batch queue: ``audience_write`` (make the write's next
calls, if it is the audience's current write) and ``audience_poll`` (read an indexing state once).
They carry execution ids only; the state lives in DynamoDB."""

from __future__ import annotations

from relay.core.queue import Queue
from relay.destinations.batch import NAME

WRITE = "audience_write"
POLL = "audience_poll"


class AudienceQueue:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def write(self, execution_id: str, *, delay_s: float = 0) -> None:
        self.queue.send({"destination": NAME, "kind": WRITE, "execution_id": execution_id}, delay_s=delay_s)

    def poll(self, execution_id: str, *, attempt: int, delay_s: float) -> None:
        self.queue.send(
            {"destination": NAME, "kind": POLL, "execution_id": execution_id, "attempt": attempt},
            delay_s=delay_s,
        )

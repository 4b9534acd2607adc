"""The dispatch queue as the Optimized.app path uses it: small wake-ups ("group G has work") and
chunks parked after their last attempt. The work itself waits in DynamoDB."""

from __future__ import annotations

from relay.core.queue import Queue
from relay.destinations.optimized import NAME


class Wakeups:
    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def wake(self, group_id: str, *, delay_s: float = 0, early_s: float = 0) -> None:
        """Ask for a dispatcher for ``group_id`` in ``delay_s`` seconds (pass whole seconds: the
        dispatcher sleeps any sub-second rest itself, so a slot is not missed by up to a second).
        ``early_s``: the wake-up comes that much before its slot, to prepare the batches in time."""
        message: dict[str, object] = {"kind": "wake", "destination": NAME, "group_id": group_id}
        if early_s > 0:
            message["early_s"] = round(early_s, 2)
        self.queue.send(message, delay_s=delay_s)

    def dead_letter_chunk(self, execution_id: str, seq: int, group_id: str, reason: str) -> None:
        """A chunk that exhausted its attempts: parked in the DLQ for `relay dlq redrive`."""
        self.queue.dead_letter(
            {
                "kind": "dead_chunk",
                "destination": NAME,
                "execution_id": execution_id,
                "seq": seq,
                "group_id": group_id,
            },
            reason,
        )

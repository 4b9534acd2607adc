"""SQS: the dispatch queue carries small wake-ups ("group G has work"); the work waits in DynamoDB."""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DELAY_S = 900  # SQS's ceiling for DelaySeconds


class WakeQueue:
    def __init__(self, client: Any, queue_url: str, dead_letter_url: str = "") -> None:
        self.client = client
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url

    def wake(self, group_id: str, *, delay_s: float = 0, early_s: float = 0) -> None:
        """Ask for a dispatcher for ``group_id`` in ``delay_s`` seconds (rounded down: the
        dispatcher sleeps the sub-second rest itself, so a slot is not missed by up to a second).
        ``early_s``: the wake-up comes that much before its slot, to prepare the batches in time."""
        delay = min(MAX_DELAY_S, max(0, math.floor(delay_s)))
        message: dict[str, Any] = {"kind": "wake", "destination": "optimized", "group_id": group_id}
        if early_s > 0:
            message["early_s"] = round(early_s, 2)
        self.client.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message), DelaySeconds=delay)

    def dead_letter_chunk(self, execution_id: str, seq: int, group_id: str, reason: str) -> None:
        """A chunk that exhausted its attempts: parked in the DLQ for `relay-dlq redrive`."""
        self.client.send_message(
            QueueUrl=self.dead_letter_url,
            MessageBody=json.dumps(
                {
                    "kind": "dead_chunk",
                    "destination": "optimized",
                    "execution_id": execution_id,
                    "seq": seq,
                    "group_id": group_id,
                    "reason": reason,
                }
            ),
        )

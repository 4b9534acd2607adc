"""SQS, one queue type for every queue of the relay: send (now or delayed), send many, dead-letter.

Messages carry ids and small facts only; the state they point at lives in DynamoDB. Each
destination builds its own message bodies (a dict with ``kind`` and ``destination``); this module
knows nothing of what is in them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

MAX_DELAY_S = 900  # SQS's ceiling for DelaySeconds
MAX_BATCH = 10  # SQS's ceiling for SendMessageBatch entries


def delay_seconds(delay_s: float) -> int:
    """SQS delays are whole seconds: rounded up (a message never arrives before it is due) and
    capped at SQS's ceiling. Callers that must not lose the sub-second rest (the dispatcher) pass
    a whole number and sleep the rest themselves."""
    return min(MAX_DELAY_S, max(0, math.ceil(delay_s)))


def encode(message: dict[str, Any]) -> str:
    return json.dumps(message, separators=(",", ":"), default=str)


class Queue:
    def __init__(self, client: Any, url: str, dead_letter_url: str = "") -> None:
        self.client = client
        self.url = url
        self.dead_letter_url = dead_letter_url

    def send(self, message: dict[str, Any], *, delay_s: float = 0) -> None:
        self.client.send_message(
            QueueUrl=self.url, MessageBody=encode(message), DelaySeconds=delay_seconds(delay_s)
        )

    def send_many(
        self, messages: Sequence[dict[str, Any]], *, delays_s: Sequence[float] | None = None
    ) -> list[int]:
        """Queue messages, ten a call; returns the indexes of those SQS did not take."""
        failed: list[int] = []
        for start in range(0, len(messages), MAX_BATCH):
            entries = [
                {
                    "Id": str(start + i),
                    "MessageBody": encode(m),
                    "DelaySeconds": delay_seconds(delays_s[start + i] if delays_s else 0),
                }
                for i, m in enumerate(messages[start : start + MAX_BATCH])
            ]
            try:
                answer = self.client.send_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception:
                failed += [int(e["Id"]) for e in entries]
                continue
            failed += [int(f["Id"]) for f in answer.get("Failed") or []]
        return failed

    def dead_letter(self, message: dict[str, Any], reason: str) -> None:
        """Park a message the relay gave up on in the dead-letter queue, for `relay dlq redrive`."""
        self.client.send_message(
            QueueUrl=self.dead_letter_url, MessageBody=encode({**message, "reason": reason})
        )

"""SQS for Optimove: the send queue (one message per execution to run) and the poll queue (one
message per status check, delayed). Both carry ids only; the state lives in DynamoDB."""

from __future__ import annotations

import json
import math
import random
from typing import Any

from relay import backoff

MAX_DELAY_S = 900  # SQS's ceiling for DelaySeconds


def _delay(seconds: float) -> int:
    return min(MAX_DELAY_S, max(0, math.ceil(seconds)))


class OptimoveQueues:
    def __init__(
        self, client: Any, send_url: str, send_dlq_url: str, poll_url: str, poll_dlq_url: str = ""
    ) -> None:
        self.client = client
        self.send_url = send_url
        self.send_dlq_url = send_dlq_url
        self.poll_url = poll_url
        self.poll_dlq_url = poll_dlq_url

    def send(self, execution_id: str, *, delay_s: float = 0) -> None:
        self.client.send_message(
            QueueUrl=self.send_url,
            MessageBody=json.dumps({"kind": "send", "destination": "optimove", "execution_id": execution_id}),
            DelaySeconds=_delay(delay_s),
        )

    def send_many(self, execution_ids: list[str], *, delays_s: list[float] | None = None) -> None:
        for start in range(0, len(execution_ids), 10):
            part = execution_ids[start : start + 10]
            entries = [
                {
                    "Id": str(i),
                    "MessageBody": json.dumps({"kind": "send", "destination": "optimove", "execution_id": e}),
                    "DelaySeconds": _delay(delays_s[start + i] if delays_s else 0),
                }
                for i, e in enumerate(part)
            ]
            answer = self.client.send_message_batch(QueueUrl=self.send_url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SQS refused {len(answer['Failed'])} message(s): {answer['Failed'][:1]}")

    def poll(self, execution_id: str, *, attempt: int, delay_s: float) -> None:
        self.client.send_message(
            QueueUrl=self.poll_url,
            MessageBody=json.dumps(
                {"kind": "poll", "destination": "optimove", "execution_id": execution_id, "attempt": attempt}
            ),
            DelaySeconds=_delay(delay_s),
        )

    def dead_letter(self, execution_id: str, reason: str) -> None:
        """A run that exhausted its retries: parked for `relay-dlq redrive` (the execution shows it)."""
        self.client.send_message(
            QueueUrl=self.send_dlq_url,
            MessageBody=json.dumps(
                {
                    "kind": "dead_send",
                    "destination": "optimove",
                    "execution_id": execution_id,
                    "reason": reason,
                }
            ),
        )


def backoff_s(attempt: int, base_s: float, max_s: float) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(max, base * 2^(attempt-1))], never
    under a second (SQS delays are whole seconds anyway)."""
    top = backoff.ceiling(attempt, base_s, max_s)
    return max(min(1.0, top), random.uniform(0, top))

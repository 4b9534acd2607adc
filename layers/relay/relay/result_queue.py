"""SQS: the results queue carries each new result to the deliver function (record, then forward)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

MAX_DELAY_S = 900  # SQS's ceiling for DelaySeconds


class ResultQueue:
    def __init__(self, client: Any, queue_url: str, dead_letter_url: str = "") -> None:
        self.client = client
        self.queue_url = queue_url
        self.dead_letter_url = dead_letter_url

    def send(self, messages: Sequence[dict[str, Any]]) -> list[int]:
        """Queue messages (10 a call); returns the indexes that could not be queued."""
        failed: list[int] = []
        for start in range(0, len(messages), 10):
            entries = [
                {"Id": str(start + i), "MessageBody": json.dumps(m, separators=(",", ":"), default=str)}
                for i, m in enumerate(messages[start : start + 10])
            ]
            try:
                answer = self.client.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception:
                failed += [int(e["Id"]) for e in entries]
                continue
            failed += [int(f["Id"]) for f in answer.get("Failed") or []]
        return failed

    def retry(self, message: dict[str, Any], delay_s: float) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(message, separators=(",", ":"), default=str),
            DelaySeconds=min(MAX_DELAY_S, max(0, math.ceil(delay_s))),
        )

    def dead_letter(self, message: dict[str, Any], reason: str) -> None:
        self.client.send_message(
            QueueUrl=self.dead_letter_url,
            MessageBody=json.dumps({**message, "reason": reason}, separators=(",", ":"), default=str),
        )

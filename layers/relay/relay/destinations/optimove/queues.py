"""The Optimove path's two queues: runs to send (on the dispatch queue) and status polls (delayed,
on the poll queue). Both carry execution ids only; the state lives in DynamoDB."""

from __future__ import annotations

from relay.core.queue import Queue
from relay.destinations.optimove import NAME


class RunQueues:
    def __init__(self, send: Queue, poll: Queue) -> None:
        self.send_queue = send
        self.poll_queue = poll

    def send(self, execution_id: str, *, delay_s: float = 0) -> None:
        self.send_queue.send(
            {"kind": "send", "destination": NAME, "execution_id": execution_id}, delay_s=delay_s
        )

    def poll(
        self, execution_id: str, *, attempt: int, delay_s: float, optimove_execution_id: str | None = None
    ) -> None:
        """Status read number ``attempt`` (the run's ``poll_seq`` says which one is current). The
        first carries Optimove's execution id: it records the run if the sender could not."""
        message: dict[str, object] = {
            "kind": "poll",
            "destination": NAME,
            "execution_id": execution_id,
            "attempt": attempt,
        }
        if optimove_execution_id:
            message["optimove_execution_id"] = optimove_execution_id
        self.poll_queue.send(message, delay_s=delay_s)

    def dead_letter(self, execution_id: str, reason: str) -> None:
        """A run that exhausted its retries: parked for `relay dlq redrive` (the execution shows it)."""
        self.send_queue.dead_letter(
            {"kind": "dead_send", "destination": NAME, "execution_id": execution_id}, reason
        )

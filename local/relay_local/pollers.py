"""An SQS event source mapping emulator: feeds queue messages to handlers the way Lambda does.

Per ``SQS`` event of a function: worker threads long-poll the queue, hand the handler a batch as
a real SQS event, and delete what succeeded. With ``ReportBatchItemFailures`` only the messages
not listed in ``batchItemFailures`` are deleted; when the handler raises nothing is deleted, so
the visibility timeout and the queue's redrive policy (DLQ) do their job, as in Lambda.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

log = logging.getLogger(__name__)

_RECORD_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SequenceNumber",
    "AWSTraceHeader",
    "DeadLetterQueueSourceArn",
)


@dataclass(frozen=True)
class SqsMapping:
    """One ``Type: SQS`` event of a function."""

    function_id: str
    event_name: str
    queue_logical_id: str
    batch_size: int = 10
    report_batch_item_failures: bool = False
    enabled: bool = True


def sqs_mappings(template: Mapping[str, Any]) -> list[SqsMapping]:
    """Every SQS event source of every function (Queue given as ``!GetAtt X.Arn``)."""
    out = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        events = ((resource or {}).get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            if (event or {}).get("Type") != "SQS":
                continue
            props = event.get("Properties") or {}
            queue = props.get("Queue")
            if isinstance(queue, dict) and "Fn::GetAtt" in queue:
                target = queue["Fn::GetAtt"]
                queue_id = target.split(".", 1)[0] if isinstance(target, str) else target[0]
            else:
                raise ValueError(f"{logical_id}.{event_name}: Queue must be !GetAtt <Queue>.Arn")
            out.append(
                SqsMapping(
                    function_id=logical_id,
                    event_name=event_name,
                    queue_logical_id=queue_id,
                    batch_size=int(props.get("BatchSize", 10)),
                    report_batch_item_failures="ReportBatchItemFailures"
                    in (props.get("FunctionResponseTypes") or []),
                    enabled=str(props.get("Enabled", True)).lower() != "false",
                )
            )
    return out


def _message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """SQS API message attributes -> the shape Lambda puts in an SQS event record."""
    out = {}
    for name, value in attributes.items():
        item: dict[str, Any] = {"stringListValues": [], "binaryListValues": [], "dataType": value["DataType"]}
        if "StringValue" in value:
            item["stringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            item["binaryValue"] = base64.b64encode(value["BinaryValue"]).decode("ascii")
        out[name] = item
    return out


def build_sqs_record(message: Mapping[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """One record of a Lambda SQS event from one ``receive_message`` message."""
    attributes = message.get("Attributes") or {}
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message.get("Body", ""),
        "attributes": {key: attributes[key] for key in _RECORD_ATTRIBUTES if key in attributes},
        "messageAttributes": _message_attributes(message.get("MessageAttributes") or {}),
        "md5OfBody": message.get("MD5OfBody", ""),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


@dataclass
class PollerStats:
    invocations: int = 0
    errors: int = 0
    received: int = 0
    deleted: int = 0
    failed: int = 0
    in_flight: int = 0  # batches received and not yet finished (handler running or deleting)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts: int) -> None:
        with self._lock:
            for key, value in counts.items():
                setattr(self, key, getattr(self, key) + value)

    def as_dict(self) -> dict[str, int]:
        with self._lock:
            return {
                "invocations": self.invocations,
                "errors": self.errors,
                "received": self.received,
                "deleted": self.deleted,
                "failed": self.failed,
            }


class SqsPoller:
    """Worker threads feeding one queue to one handler (one event source mapping)."""

    def __init__(
        self,
        sqs_client: Any,
        queue_url: str,
        queue_arn: str,
        invoke: Callable[[dict[str, Any]], Any],
        *,
        batch_size: int = 10,
        report_batch_item_failures: bool = False,
        workers: int = 2,
        region: str = "us-east-1",
        name: str = "sqs-poller",
        wait_time_s: int = 1,
    ) -> None:
        self.sqs = sqs_client
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.invoke = invoke
        self.batch_size = max(1, min(int(batch_size), 10))
        self.report_batch_item_failures = report_batch_item_failures
        self.workers = max(1, int(workers))
        self.region = region
        self.name = name
        self.wait_time_s = wait_time_s
        self.stats = PollerStats()
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._pause_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Per worker thread: receives begun, and whether one is under way now.
        self._receiving = threading.Condition()
        self._receives: dict[int, tuple[int, bool]] = {}

    def start(self) -> SqsPoller:
        self._stop.clear()
        for index in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"{self.name}-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 2.5) -> None:
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._threads = [thread for thread in self._threads if thread.is_alive()]
        if self._threads:
            log.warning("%s: %d worker(s) still busy after stop()", self.name, len(self._threads))

    def _run(self) -> None:
        while not self._stop.is_set():
            if self._paused.is_set():
                self._stop.wait(0.05)
                continue
            try:
                self.poll_once()
            except (ClientError, BotoCoreError) as exc:
                if self._stop.is_set():
                    return
                log.warning("%s: receive failed: %s", self.name, exc)
                self._stop.wait(0.5)
            except Exception:
                log.exception("%s: poller error", self.name)
                self._stop.wait(0.5)

    def poll_once(self) -> int:
        """Receive one batch and process it; returns how many messages were received."""
        self._mark_receiving(True)
        try:
            response = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=self.batch_size,
                WaitTimeSeconds=self.wait_time_s,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
        finally:
            self._mark_receiving(False)
        messages = response.get("Messages") or []
        if not messages:
            return 0
        with self._pause_lock:
            paused = self._paused.is_set()
            if not paused:
                self.stats.add(received=len(messages), in_flight=1)
        if paused:  # a long poll that began before pause(): hand its messages straight back
            self._hand_back(messages)
            return 0
        try:
            records = [build_sqs_record(message, self.queue_arn, self.region) for message in messages]
            self.stats.add(invocations=1)
            try:
                result = self.invoke({"Records": records})
            except Exception:
                self.stats.add(errors=1, failed=len(messages))
                log.exception("%s: handler raised; %d message(s) left for retry", self.name, len(messages))
                return len(messages)
            failed_ids = self._failed_ids(result, records)
            done = [record for record in records if record["messageId"] not in failed_ids]
            self.stats.add(failed=len(records) - len(done))
            self._delete(done)
            return len(messages)
        finally:
            self.stats.add(in_flight=-1)

    def _mark_receiving(self, receiving: bool) -> None:
        ident = threading.get_ident()
        with self._receiving:
            count, _ = self._receives.get(ident, (0, False))
            self._receives[ident] = (count + 1 if receiving else count, receiving)
            self._receiving.notify_all()

    def await_receives_begun_before(self, timeout: float = 30.0) -> None:
        """Wait until every receive under way now has ended. Moto fixes a received message's
        visibility timeout when the (long-polling) receive *begins*, SQS when it delivers: after
        changing the queue's VisibilityTimeout, this makes the new value apply from then on."""
        with self._receiving:
            under_way = {ident: count for ident, (count, receiving) in self._receives.items() if receiving}

            def ended() -> bool:
                return all(self._receives[i][0] > n or not self._receives[i][1] for i, n in under_way.items())

            self._receiving.wait_for(ended, timeout)

    def pause(self) -> None:
        """No invocation starts from now on; messages a receive under way returns go back."""
        with self._pause_lock:
            self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def _hand_back(self, messages: list[dict[str, Any]]) -> None:
        try:
            self.sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 0}
                    for index, message in enumerate(messages)
                ],
            )
        except (ClientError, BotoCoreError) as exc:  # they come back after their visibility timeout
            log.warning("%s: could not hand back %d message(s): %s", self.name, len(messages), exc)

    def _failed_ids(self, result: Any, records: list[dict[str, Any]]) -> set[str]:
        if not self.report_batch_item_failures or not result:
            return set()
        all_ids = {record["messageId"] for record in records}
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        if failures is None:
            return set()
        ids = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in all_ids:
                # Lambda treats an invalid response as a failure of the whole batch.
                log.warning("%s: invalid batchItemFailures entry %r; whole batch retried", self.name, failure)
                return all_ids
            ids.add(identifier)
        return ids

    def _delete(self, records: list[dict[str, Any]]) -> None:
        for start in range(0, len(records), 10):
            chunk = records[start : start + 10]
            response = self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": record["receiptHandle"]}
                    for index, record in enumerate(chunk)
                ],
            )
            self.stats.add(deleted=len(response.get("Successful") or []))
            for failure in response.get("Failed") or []:
                log.warning("%s: delete failed: %s", self.name, failure)


class Pollers:
    """All event source mappings of a template, started and stopped together."""

    def __init__(self, pollers: list[SqsPoller]) -> None:
        self.pollers = pollers

    def start(self) -> Pollers:
        for poller in self.pollers:
            poller.start()
        return self

    def stop(self, timeout: float = 2.5) -> None:
        for poller in self.pollers:
            poller._stop.set()
        deadline = time.monotonic() + timeout
        for poller in self.pollers:
            poller.stop(timeout=max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, dict[str, int]]:
        return {poller.name: poller.stats.as_dict() for poller in self.pollers}

    def in_flight(self) -> int:
        """Invocations running right now, across every mapping."""
        return sum(poller.stats.in_flight for poller in self.pollers)

    @contextmanager
    def paused(self, timeout: float = 15.0) -> Iterator[None]:
        """No new invocations; waits (up to ``timeout``) for running ones to finish first.
        Messages that a receive under way returns meanwhile are handed back to their queue."""
        for poller in self.pollers:
            poller.pause()
        try:
            deadline = time.monotonic() + timeout
            while self.in_flight() and time.monotonic() < deadline:
                time.sleep(0.05)
            yield
        finally:
            for poller in self.pollers:
                poller.resume()

    def totals(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for poller in self.pollers:
            for key, value in poller.stats.as_dict().items():
                total[key] = total.get(key, 0) + value
        return total

"""`relay dlq`: list and re-drive the relay's dead-letter queues (local stack or AWS).

    relay dlq list    [--queue QUEUE|all] [--max N] [--json]  one line per message: what it is, why it died
    relay dlq show    [--queue QUEUE|all] [--max N]           each message in full, with its SQS attributes
    relay dlq redrive [--queue QUEUE|all] [--max N]

(``relay-dlq list|show|redrive``, its name before `relay`, is the same command with ``--json``.)

QUEUE is a dead-letter queue's label: each destination names its own (dispatch for Optimized.app;
optimove and poll for Optimove), and `results` is the results path's.

Queue URLs come from the relay the command finds (the local stack, ``--stack-name``'s outputs) or
the same environment the functions read (DISPATCH_DLQ_URL, ... and their queues' *_QUEUE_URL).
`redrive` moves the messages back to the queue they came from (SQS's message-move task in AWS;
the same move done here against the local stack), where the worker re-drives what the relay
parked (a chunk back to pending, a run back to queued, a result's attempts reset) and handles the
rest as it would any message: the guards against double sends hold either way.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

RESULTS = "results"


def dead_letter_queues() -> dict[str, str]:
    """Every DLQ of the template: each destination's (from the registry) and the results path's."""
    from relay import destinations  # noqa: F401 - registers every destination
    from relay.executions import registry
    from relay.results.settings import DEAD_LETTER_QUEUES

    queues = {label: env for d in registry.every() for label, env in d.dead_letter_queues.items()}
    return {**queues, **DEAD_LETTER_QUEUES}


def describe(body: str) -> dict[str, Any]:
    try:
        message = json.loads(body)
    except ValueError:
        return {"kind": "unreadable", "body": body[:200]}
    return message if isinstance(message, dict) else {"kind": "unreadable", "body": body[:200]}


def summary(queue: str, sqs_message: dict[str, Any]) -> dict[str, Any]:
    """What an operator needs to decide: which queue, destination, execution, and why it died -
    the relay's own reason when it parked the message, else SQS's redrive policy."""
    message = describe(sqs_message["Body"])
    attributes = sqs_message.get("Attributes", {})
    receives = attributes.get("ApproximateReceiveCount")
    reason = message.get("reason") or (
        "its handler failed on every receive (SQS moved it here after the queue's maxReceiveCount)"
    )
    sent = attributes.get("SentTimestamp")
    return {
        "queue": queue,
        "kind": message.get("kind"),
        "destination": message.get("destination") or (queue if queue == RESULTS else None),
        "execution_id": message.get("execution_id"),
        "why": reason,
        "receive_count": int(receives) if receives else None,
        "first_sent_at": _iso_ms(sent) if sent else None,
    }


def _iso_ms(epoch_ms: str) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch_ms) / 1000))


def source_queue_env(dead_letter_env: str) -> str:
    """The env var of the work queue a dead-letter queue belongs to (DISPATCH_DLQ_URL ->
    DISPATCH_QUEUE_URL): where a re-driven message goes back to."""
    from relay.executions.registry import work_queue_env

    return work_queue_env(dead_letter_env)


def move_back(
    sqs: Any, name: str, dlq_url: str, source_url: str, limit: int, *, emulated: bool, say: Any = print
) -> int:
    """Re-drive: the messages go back to the queue they came from, and its worker takes them up
    again - a message the relay parked (it carries a ``reason``) is re-driven by its destination
    (a parked chunk back to pending, a parked run back to queued, a result's attempts reset).
    In AWS this is SQS's own message-move task; against an emulator without one (moto), the same
    move done here: receive, send to the source queue, delete. Returns the messages moved here."""
    if not emulated:
        arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        task = sqs.start_message_move_task(SourceArn=arn)
        say(f"{name}: moving every message back to its queue (SQS message-move task {task['TaskHandle']})")
        return 0
    moved = 0
    for m in receive(sqs, dlq_url, limit, peek=False):
        sqs.send_message(QueueUrl=source_url, MessageBody=m["Body"])
        sqs.delete_message(QueueUrl=dlq_url, ReceiptHandle=m["ReceiptHandle"])
        summary_line = summary(name, m)
        say(f"{name}: moved back: {summary_line['kind']} {summary_line['execution_id'] or ''}".rstrip())
        moved += 1
    return moved


def receive(sqs: Any, queue_url: str, limit: int, *, peek: bool) -> list[dict]:
    """Up to ``limit`` messages. ``peek``: each is visible again at once (list, show); else it
    stays hidden for the queue's visibility timeout while it is re-driven."""
    messages: dict[str, dict] = {}
    while len(messages) < limit:
        options = {"VisibilityTimeout": 0} if peek else {}
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"], **options
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in messages]
        if not fresh:
            break  # empty, or (peeking) the same messages again
        messages.update((m["MessageId"], m) for m in fresh)
    return list(messages.values())[:limit]


def main(argv: list[str] | None = None) -> int:
    """``relay-dlq``: the name `relay dlq` had before, kept working (JSON lines, as it printed)."""
    from relay_ops.cli import main as relay

    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "list" and "--json" not in args:
        args.append("--json")
    return relay(["dlq", *args])


if __name__ == "__main__":
    sys.exit(main())

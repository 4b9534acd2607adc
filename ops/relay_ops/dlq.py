"""`relay-dlq`: list and re-drive the relay's dead-letter queues (local stack or AWS).

    relay-dlq list    [--queue QUEUE|all] [--max N]   one line per message: what it is, why it died
    relay-dlq show    [--queue QUEUE|all] [--max N]   each message in full, with its SQS attributes
    relay-dlq redrive [--queue QUEUE|all] [--max N]

QUEUE is a dead-letter queue's label: each destination names its own (dispatch for Optimized.app;
optimove and poll for Optimove), and `results` is the results path's.

Queue URLs and the table come from the same environment the functions read (DISPATCH_DLQ_URL,
OPTIMOVE_DLQ_URL, POLL_DLQ_URL, RESULTS_DLQ_URL and their queues, RELAY_TABLE_NAME); against AWS
take them from the stack's outputs. Each message is handed to the destination it names (or to the
results path), which puts its work back where it waits; it is deleted from the DLQ only after.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

RESULTS = ("results", "RESULTS_DLQ_URL")


def dead_letter_queues() -> dict[str, str]:
    """Every DLQ of the template: each destination's (from the registry) and the results path's."""
    from relay import destinations  # noqa: F401 - registers every destination
    from relay.executions import registry

    queues = {label: env for d in registry.every() for label, env in d.dead_letter_queues.items()}
    return {**queues, RESULTS[0]: RESULTS[1]}


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
        "destination": message.get("destination") or (queue if queue == RESULTS[0] else None),
        "execution_id": message.get("execution_id"),
        "why": reason,
        "receive_count": int(receives) if receives else None,
        "first_sent_at": _iso_ms(sent) if sent else None,
    }


def _iso_ms(epoch_ms: str) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(int(epoch_ms) / 1000))


def redrive(queue: str, message: dict[str, Any], now: float) -> str:
    """Act on one dead-letter message; returns what was done (for the operator's log). A result
    goes back to the results path; anything else to the destination it names."""
    if queue == RESULTS[0]:
        from relay.results.redrive import redrive as redrive_result

        return redrive_result(message)
    from relay.executions import registry

    return registry.get(message.get("destination")).redrive(message, now)


def _receive(sqs: Any, queue_url: str, limit: int, *, peek: bool) -> list[dict]:
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
    parser = argparse.ArgumentParser(prog="relay-dlq", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("command", choices=["list", "show", "redrive"])
    dlq_env = dead_letter_queues()
    parser.add_argument("--queue", choices=[*dlq_env, "all"], default="all")
    parser.add_argument("--max", type=int, default=100)
    args = parser.parse_args(argv)
    from relay.core.aws import client
    from relay.executions.registry import UnknownDestination

    names = list(dlq_env) if args.queue == "all" else [args.queue]
    urls = {name: os.environ.get(dlq_env[name], "") for name in names}
    if not any(urls.values()):
        parser.error(f"set {' / '.join(dlq_env[n] for n in names)} (the stack's outputs)")
    sqs = client("sqs")
    failures = 0
    for name, url in urls.items():
        if not url:
            continue
        messages = _receive(sqs, url, args.max, peek=args.command != "redrive")
        for m in messages:
            message = describe(m["Body"])
            if args.command == "list":
                print(json.dumps(summary(name, m)))
                continue
            if args.command == "show":
                print(
                    json.dumps(
                        {**summary(name, m), "message": message, "sqs": m.get("Attributes", {})}, indent=2
                    )
                )
                continue
            try:
                print(f"{name}: {redrive(name, message, time.time())}")
            except (ValueError, KeyError, UnknownDestination) as exc:
                failures += 1
                print(f"{name}: left in the DLQ: {exc}", file=sys.stderr)
                continue
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if args.command in ("list", "show"):
            print(f"{name}: {len(messages)} message(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""`relay-dlq`: list and re-drive the relay's dead-letter queues (local stack or AWS).

    relay-dlq list    [--queue QUEUE|all] [--max N]
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


def redrive(queue: str, message: dict[str, Any], now: float) -> str:
    """Act on one dead-letter message; returns what was done (for the operator's log). A result
    goes back to the results path; anything else to the destination it names."""
    if queue == RESULTS[0]:
        from relay.results.redrive import redrive as redrive_result

        return redrive_result(message)
    from relay.executions import registry

    return registry.get(message.get("destination")).redrive(message, now)


def _receive(sqs: Any, queue_url: str, limit: int) -> list[dict]:
    messages: list[dict] = []
    while len(messages) < limit:
        batch = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            break
        messages += batch
    return messages[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay-dlq", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("command", choices=["list", "redrive"])
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
        messages = _receive(sqs, url, args.max)
        for m in messages:
            message = describe(m["Body"])
            if args.command == "list":
                receives = m["Attributes"].get("ApproximateReceiveCount")
                print(json.dumps({"queue": name, "receive_count": receives, **message}))
                continue
            try:
                print(f"{name}: {redrive(name, message, time.time())}")
            except (ValueError, KeyError, UnknownDestination) as exc:
                failures += 1
                print(f"{name}: left in the DLQ: {exc}", file=sys.stderr)
                continue
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
        if args.command == "list":
            print(f"{name}: {len(messages)} message(s); visible again after the queue's visibility timeout")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""`relay-dlq`: list and re-drive the dispatch dead-letter queue (local stack or AWS).

    relay-dlq list    [--queue-url URL]
    relay-dlq redrive [--queue-url URL] [--table NAME] [--dispatch-queue-url URL] [--max N]

Defaults come from the same environment the functions read (DISPATCH_DLQ_URL, RELAY_TABLE_NAME,
DISPATCH_QUEUE_URL); against AWS take them from the stack's outputs. A message is deleted from
the DLQ only after it was re-driven.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from relay.aws import client
from relay.flows.redrive import describe, redrive
from relay.queues import WakeQueue
from relay.store.table import Table


def _receive(sqs: object, queue_url: str, limit: int) -> list[dict]:
    messages: list[dict] = []
    while len(messages) < limit:
        batch = sqs.receive_message(  # type: ignore[attr-defined]
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1, AttributeNames=["All"]
        ).get("Messages", [])
        if not batch:
            break
        messages += batch
    return messages[:limit]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay-dlq", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["list", "redrive"])
    parser.add_argument("--queue-url", default=os.environ.get("DISPATCH_DLQ_URL"))
    parser.add_argument("--dispatch-queue-url", default=os.environ.get("DISPATCH_QUEUE_URL"))
    parser.add_argument("--table", default=os.environ.get("RELAY_TABLE_NAME", "RelayTable"))
    parser.add_argument("--max", type=int, default=100)
    args = parser.parse_args(argv)
    if not args.queue_url:
        parser.error("give --queue-url or set DISPATCH_DLQ_URL")
    sqs = client("sqs")
    messages = _receive(sqs, args.queue_url, args.max)
    if args.command == "list":
        for m in messages:
            print(
                json.dumps(
                    {"receive_count": m["Attributes"].get("ApproximateReceiveCount"), **describe(m["Body"])}
                )
            )
        print(f"{len(messages)} message(s); they become visible again after the queue's visibility timeout")
        return 0
    if not args.dispatch_queue_url:
        parser.error("give --dispatch-queue-url or set DISPATCH_QUEUE_URL")
    table = Table(client("dynamodb"), args.table)
    queue = WakeQueue(sqs, args.dispatch_queue_url, args.queue_url)
    failures = 0
    for m in messages:
        try:
            print(redrive(m["Body"], table=table, queue=queue, now=time.time()))
        except (ValueError, KeyError) as exc:
            failures += 1
            print(f"left in the DLQ: {exc}", file=sys.stderr)
            continue
        sqs.delete_message(QueueUrl=args.queue_url, ReceiptHandle=m["ReceiptHandle"])
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

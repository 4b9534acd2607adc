"""`GET /v1/status`: per destination what waits and each limiter's use (the registry asks each
destination), and the depth of every work queue and dead-letter queue."""

from __future__ import annotations

import os
from typing import Any

from relay.core.clock import iso
from relay.core.store.table import Table
from relay.executions import registry
from relay.executions.models import QueueDepth, RelayStatus

_DEPTHS = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}


def queues(extra_dead_letter_queues: dict[str, str]) -> list[tuple[str, str, bool]]:
    """(label, env var of its URL, dead letter?) of each destination's queues and ``extra``'s."""
    dead_letters = {label: env for d in registry.every() for label, env in d.dead_letter_queues.items()}
    out: list[tuple[str, str, bool]] = []
    for label, env in {**dead_letters, **extra_dead_letter_queues}.items():
        out += [(label, registry.work_queue_env(env), False), (label, env, True)]
    return out


def queue_depths(sqs: Any, extra_dead_letter_queues: dict[str, str]) -> list[QueueDepth]:
    depths = []
    for label, env, dead_letter in queues(extra_dead_letter_queues):
        url = os.environ.get(env)
        if not url:
            continue
        found = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_DEPTHS.values()))["Attributes"]
        counts = {field: int(found.get(attribute, 0)) for field, attribute in _DEPTHS.items()}
        depths.append(QueueDepth(queue=label, dead_letter=dead_letter, **counts))
    return depths


def relay_status(table: Table, sqs: Any, now: float, extra_dead_letter_queues: dict[str, str]) -> RelayStatus:
    return RelayStatus(
        at=iso(now),
        destinations=[d.status(table, now) for d in registry.every()],
        queues=queue_depths(sqs, extra_dead_letter_queues),
    )

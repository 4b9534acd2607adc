"""Results from Optimized.app webhooks, the request path (must stay fast): the signature was
verified by the handler; here every event is normalised, de-duplicated by one conditional put with
a TTL, and the new ones are queued with one SQS call. Linking, counting and forwarding happen in
the ``deliver`` worker (``relay.results.deliver``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.queue import Queue
from relay.core.store.table import Table
from relay.results import store
from relay.results.adapters import optimized
from relay.results.models import WebhookAccepted
from relay.results.settings import ResultsSettings
from relay.results.store import SOURCE


class QueueUnavailable(Exception):
    """New events could not be queued; their de-duplication marks were undone (answer 5xx)."""


@dataclass
class IngestDeps:
    table: Table
    queue: Queue
    settings: ResultsSettings
    clock: Clock = time.time


def ingest(payload: Any, deps: IngestDeps) -> WebhookAccepted:
    """Normalise, de-duplicate and queue the events of one verified request body."""
    now = deps.clock()
    events = [optimized.normalise(e) for e in optimized.split_events(payload)]
    fresh, duplicates, seen_here = [], 0, set()
    for event in events:
        if event.event_id in seen_here or not store.mark_seen(
            deps.table, SOURCE, event.event_id, now, deps.settings.webhook_dedupe_ttl_s
        ):
            duplicates += 1
            continue
        seen_here.add(event.event_id)
        fresh.append(event)
    failpoint("webhook.after_mark")
    messages = [
        {"kind": "record", "source": SOURCE, "received_at": iso(now), "event": e.model_dump(mode="json")}
        for e in fresh
    ]
    failed = deps.queue.send_many(messages)
    failpoint("webhook.after_queue")
    if failed:
        for index in failed:
            store.forget_seen(deps.table, SOURCE, fresh[index].event_id)
        raise QueueUnavailable(f"{len(failed)} of {len(fresh)} events could not be queued")
    return WebhookAccepted(accepted=len(fresh), duplicates=duplicates, event_ids=[e.event_id for e in events])

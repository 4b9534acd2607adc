"""Results from Optimized.app webhooks, the request path (must stay fast): the signature was
verified by the handler; here every event is normalised and stored with its de-duplication mark
(conditional puts, a hundred to a transaction), and the new ones are queued. Linking, counting and
forwarding happen in the ``deliver`` worker (``relay.results.deliver``).

Stored first, then queued: a crash or a timeout between the two leaves the events stored and
unrecorded, and whichever comes first queues them again - the platform's retry of the 5xx (an
event stored and not yet recorded is queued again, not taken for a duplicate) or the reconciler
(``relay.results.reconcile``). An event that cannot be normalised is stored as it came, as
``unknown``, and acknowledged with the rest of its body: a poison event never costs the others.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.queue import Queue
from relay.core.store.table import Table
from relay.results import store
from relay.results.adapters import optimized
from relay.results.messages import record_message
from relay.results.models import ResultEvent, WebhookAccepted
from relay.results.settings import ResultsSettings
from relay.results.store import SOURCE

logger = Logger(child=True)

# Deeper than this, an event is kept as its JSON text: pydantic serialises values up to ~250
# levels (the API's listing and the forwarded body wrap the event in a few more).
MAX_DEPTH = 128
# An event larger than this (as JSON) cannot be kept whole in one DynamoDB item (400 KB).
MAX_EVENT_BYTES = 300_000


# A body of thousands of events is queued by a few threads at once, each SendMessageBatch calls
# for its slice: a few hundred calls one after another would not fit the function's 10 s.
SEND_SLICE = 100
SEND_WORKERS = 8


class QueueUnavailable(Exception):
    """Stored events could not be queued; the platform's retry (or the reconciler) queues them."""


@dataclass
class IngestDeps:
    table: Table
    queue: Queue
    settings: ResultsSettings
    clock: Clock = time.time
    emit: Callable[[str, float], None] = lambda name, value: None


def ingest(payload: Any, deps: IngestDeps) -> WebhookAccepted:
    """Normalise, store (de-duplicated) and queue the events of one verified request body."""
    now = deps.clock()
    adapted = [adapted_event(e) for e in optimized.split_events(payload)]
    events = [event for event, _ in adapted]
    if quarantined := sum(1 for _, kept_raw in adapted if kept_raw):
        deps.emit("WebhookEventsQuarantined", quarantined)
    unique: dict[str, dict[str, Any]] = {}
    for event in events:  # an id twice in one body: the first is the event, the rest duplicates
        unique.setdefault(event["event_id"], event)
    marked = store.mark_events(
        deps.table, SOURCE, list(unique.values()), now, deps.settings.webhook_dedupe_ttl_s
    )
    failpoint("webhook.after_mark")
    received = iso(now)
    messages = [record_message(SOURCE, e["event_id"], event=e, received_at=received) for e in marked.fresh]
    messages += [record_message(SOURCE, e["event_id"], event=e, received_at=at) for e, at in marked.waiting]
    failed = send_all(deps.queue, messages)
    failpoint("webhook.after_queue")
    if failed:
        # Stored and unrecorded: the platform's retry queues them again, or the reconciler does.
        raise QueueUnavailable(f"{len(failed)} of {len(messages)} events could not be queued")
    return WebhookAccepted(
        accepted=len(marked.fresh),
        duplicates=len(events) - len(marked.fresh),
        event_ids=[e["event_id"] for e in events],
    )


def send_all(queue: Queue, messages: list[dict[str, Any]]) -> list[int]:
    """Queue messages, slices of them side by side (ten a call); the indexes SQS did not take."""
    slices = [messages[i : i + SEND_SLICE] for i in range(0, len(messages), SEND_SLICE)]
    if len(slices) <= 1:
        return queue.send_many(messages)
    with ThreadPoolExecutor(min(SEND_WORKERS, len(slices))) as pool:
        answers = list(pool.map(queue.send_many, slices))
    return [n * SEND_SLICE + i for n, failed in enumerate(answers) for i in failed]


def adapt(raw: Any) -> dict[str, Any]:
    """One event of a body -> the normalised event, JSON-ready. One that cannot be normalised or
    encoded is quarantined: kept as it came (its JSON text) with type ``unknown``, never refused."""
    return adapted_event(raw)[0]


def adapted_event(raw: Any) -> tuple[dict[str, Any], bool]:
    """(the event, whether it was quarantined)."""
    depth = nesting(raw)
    if depth > MAX_DEPTH:
        return quarantine(raw, f"the event nests {depth} deep; {MAX_DEPTH} is the most kept as a value"), True
    try:
        event = optimized.normalise(raw).model_dump(mode="json")
        size = len(json.dumps(event, separators=(",", ":")))
    except Exception as exc:  # any event that breaks the adapter is quarantined
        return quarantine(raw, f"{type(exc).__name__}: {exc}"), True
    if size > MAX_EVENT_BYTES:
        return quarantine(raw, f"the event has {size} bytes as JSON; {MAX_EVENT_BYTES} are kept"), True
    return event, False


def quarantine(raw: Any, reason: str) -> dict[str, Any]:
    try:
        text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, default=str)
    except (ValueError, TypeError, RecursionError):
        text = f"<an event that does not encode as JSON: {type(raw).__name__}>"
    event_id = _own_id(raw) or "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:40]
    logger.warning(
        "webhook event quarantined: stored as it came, as unknown",
        extra={"event_id": event_id, "reason": reason[:500]},
    )
    while True:  # as stored (JSON with escapes) it must fit one item: cut the text until it does
        kept = ResultEvent(event_id=event_id, type="unknown", raw=text).model_dump(mode="json")
        size = len(json.dumps(kept, separators=(",", ":")))
        if size <= MAX_EVENT_BYTES:
            return kept
        text = text[: int(len(text) * MAX_EVENT_BYTES / size) - 64]


def nesting(value: Any) -> int:
    """How deep objects and arrays nest in a parsed JSON value (without recursion)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, dict):
            current = list(current.values())
        if isinstance(current, list):
            deepest = max(deepest, depth)
            stack += [(v, depth + 1) for v in current if isinstance(v, (dict, list))]
    return deepest


def _own_id(raw: Any) -> str | None:
    if not isinstance(raw, dict):
        return None
    for name in optimized.FIELDS["event_id"]:
        value = raw.get(name)
        if isinstance(value, (str, int)) and not isinstance(value, bool) and str(value):
            return str(value)[:256]
    return None

"""Results from Optimized.app webhooks: accept (request path), record + forward (worker), list.

Request path (must stay fast): the signature was verified by the handler; here every event is
normalised, de-duplicated by one conditional put with a TTL, and the new ones are queued with one
SQS call. Everything slower (linking to the execution, counters, forwarding) happens in the
``deliver`` worker, which is idempotent because SQS may deliver twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger

from relay.backoff import jittered
from relay.clock import Clock, iso
from relay.config import Settings
from relay.models.results import ResultPage, ResultView, WebhookAccepted
from relay.result_queue import ResultQueue
from relay.store import links
from relay.store import results as store
from relay.store.table import Table
from relay.upstreams.customer import Delivered, Gone, ResultsEndpoint
from relay.webhooks import optimized

logger = Logger(child=True)

SOURCE = "optimized"
Emit = Callable[[str, float], None]


class QueueUnavailable(Exception):
    """New events could not be queued; their de-duplication marks were undone (answer 5xx)."""


@dataclass
class IngestDeps:
    table: Table
    queue: ResultQueue
    settings: Settings
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
    messages = [
        {"kind": "record", "source": SOURCE, "received_at": iso(now), "event": e.model_dump(mode="json")}
        for e in fresh
    ]
    failed = deps.queue.send(messages)
    if failed:
        for index in failed:
            store.forget_seen(deps.table, SOURCE, fresh[index].event_id)
        raise QueueUnavailable(f"{len(failed)} of {len(fresh)} events could not be queued")
    return WebhookAccepted(accepted=len(fresh), duplicates=duplicates, event_ids=[e.event_id for e in events])


# --- The deliver worker ---------------------------------------------------------------------------


@dataclass
class DeliverDeps:
    table: Table
    queue: ResultQueue
    settings: Settings
    endpoint: ResultsEndpoint | None  # None: forwarding is off
    clock: Clock = time.time
    emit: Emit = lambda name, value: None
    links: Table | None = None  # LinksTable; None: the main table


def handle_message(message: dict[str, Any], deps: DeliverDeps) -> str:
    """One queued message: record it (first time only), then forward it once."""
    kind = message.get("kind")
    if kind == "record":
        view, attempt = record_result(message, deps), 1
    elif kind == "forward":  # a retry
        view, attempt = message["result"], int(message.get("attempt", 1))
    else:  # a result made elsewhere, ready to forward (e.g. "optimove_status" from the Optimove path)
        view, attempt = {k: v for k, v in message.items() if k != "kind"}, 1
    if deps.endpoint is None:
        return "recorded (forwarding off)"
    return forward(view, attempt, deps)


def record_result(message: dict[str, Any], deps: DeliverDeps) -> dict[str, Any]:
    """Link the event to its execution and store it with its counter (idempotent)."""
    event, received_at = message["event"], message["received_at"]
    link = links.find(
        deps.links or deps.table,
        profile_uuid=event.get("profile_uuid"),
        external_id=event.get("external_id"),
        batch_uuid=event.get("batch_uuid"),
    )
    view = ResultView(
        **event,
        received_at=received_at,
        matched=link is not None,
        execution_id=(link or {}).get("execution_id"),
        chunk_seq=(link or {}).get("chunk_seq"),
        profile_index=(link or {}).get("profile_index"),
        ref=(link or {}).get("ref"),
    ).model_dump(mode="json")
    now = deps.clock()
    expires_at = int(now + deps.settings.execution_ttl_days * 86_400)
    try:
        new = store.record(deps.table, store.item_from(view, expires_at), now)
    except store.ExecutionGone:
        view |= {"matched": False, "execution_id": None, "chunk_seq": None, "profile_index": None}
        new = store.record(deps.table, store.item_from(view, expires_at), now)
    deps.emit("ResultsMatched" if view["matched"] else "ResultsUnmatched", 1 if new else 0)
    logger.info(
        "result recorded" if new else "result already recorded",
        extra={"event_id": view["event_id"], "type": view["type"], "execution_id": view["execution_id"]},
    )
    return view


def webhook_id(view: dict[str, Any]) -> str:
    """Stable across retries (and header-safe whatever the platform's ids look like)."""
    return "msg_" + hashlib.sha256(f"{SOURCE}:{view['event_id']}".encode()).hexdigest()[:32]


def forward_body(view: dict[str, Any]) -> bytes:
    timestamp = view.get("received_at") or view.get("occurred_at")
    envelope = {"type": f"result.{view['type']}", "timestamp": timestamp, "data": view}
    return json.dumps(envelope, separators=(",", ":")).encode()


def forward(view: dict[str, Any], attempt: int, deps: DeliverDeps) -> str:
    s, endpoint = deps.settings, deps.endpoint
    assert endpoint is not None
    if store.forwarding_disabled(deps.table, endpoint.url):
        deps.emit("ResultsNotForwarded", 1)
        return "not forwarded: the endpoint answered 410 earlier"
    msg_id = webhook_id(view)
    outcome = endpoint.post(msg_id, forward_body(view), now=deps.clock())
    log = {"webhook_id": msg_id, "event_id": view["event_id"], "attempt": attempt}
    if isinstance(outcome, Delivered):
        deps.emit("ResultsForwarded", 1)
        return "forwarded"
    if isinstance(outcome, Gone):
        store.disable_forwarding(deps.table, endpoint.url, deps.clock(), "410 Gone")
        deps.emit("ResultsForwardingDisabled", 1)
        logger.critical(
            "RESULTS FORWARDING DISABLED: the results endpoint answered 410 Gone; no result will be "
            "forwarded to it again (configure a new RESULTS_WEBHOOK_URL to resume)",
            extra=log,
        )
        return "endpoint gone: forwarding disabled"
    message = {"kind": "forward", "result": view, "attempt": attempt + 1}
    if attempt >= s.results_max_attempts:
        deps.queue.dead_letter(message, f"{outcome.message} after {attempt} attempts")
        deps.emit("ResultsDeadLettered", 1)
        logger.error("result forwarding gave up, dead-lettered", extra={**log, "error": outcome.message})
        return "dead-lettered"
    delay = backoff(attempt, s.results_retry_base_s, s.results_retry_max_s, outcome.retry_after_s)
    deps.queue.retry(message, delay)
    deps.emit("ResultsForwardRetried", 1)
    logger.warning(
        "result forwarding failed, will retry",
        extra={**log, "error": outcome.message, "delay_s": round(delay, 2)},
    )
    return f"retry in {delay:.0f}s"


def backoff(attempt: int, base_s: float, max_s: float, retry_after_s: float | None) -> float:
    """Exponential with jitter; never sooner than the endpoint's Retry-After."""
    delay = jittered(attempt, base_s, max_s)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, 900.0))
    return delay


# --- Reading ----------------------------------------------------------------------------------------


def list_results(
    table: Table, *, execution_id: str | None, type_: str | None, limit: int, next_token: str | None
) -> ResultPage:
    from relay.flows.executions import decode_token, encode_token

    partition = f"EXEC#{execution_id}" if execution_id else store.UNMATCHED_PARTITION
    items, start = store.page(table, partition, type_=type_, limit=limit, start=decode_token(next_token))
    return ResultPage(
        items=[ResultView(**store.view_from(i)) for i in items],
        next_token=encode_token(start) if start else None,
    )

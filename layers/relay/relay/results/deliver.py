"""The deliver worker: each queued result is recorded against its execution (first time only)
and forwarded once, signed, to the customer's endpoint; SQS may deliver twice, so every step is
idempotent. Retries re-queue the message with a back-off delay; the last one dead-letters it."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from relay.core.backoff import jittered
from relay.core.clock import Clock
from relay.core.failpoints import failpoint
from relay.core.queue import Queue
from relay.core.store.table import Table
from relay.results import links, store
from relay.results.models import ResultView
from relay.results.settings import ResultsSettings
from relay.results.store import SOURCE

if TYPE_CHECKING:  # the endpoint (and httpx) is imported only where results are forwarded
    from relay.results.endpoint import ResultsEndpoint

logger = Logger(child=True)

Emit = Callable[[str, float], None]


@dataclass
class DeliverDeps:
    table: Table
    queue: Queue
    settings: ResultsSettings
    endpoint: ResultsEndpoint | None  # None: forwarding is off
    clock: Clock = time.time
    emit: Emit = lambda name, value: None
    links: Table | None = None  # LinksTable; None: the main table


def handle_message(message: dict[str, Any], deps: DeliverDeps) -> str:
    """One queued message: record it (first time only), then forward it once."""
    kind = message.get("kind")
    if kind == "record":
        view, attempt = record_result(message, deps), 1
        failpoint("deliver.after_count")
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
    failpoint("deliver.after_link")
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
    from relay.results.endpoint import Delivered, Gone

    s, endpoint = deps.settings, deps.endpoint
    assert endpoint is not None
    if store.forwarding_disabled(deps.table, endpoint.url):
        deps.emit("ResultsNotForwarded", 1)
        return "not forwarded: the endpoint answered 410 earlier"
    msg_id = webhook_id(view)
    failpoint("deliver.before_forward")
    outcome = endpoint.post(msg_id, forward_body(view), now=deps.clock())
    log = {"webhook_id": msg_id, "event_id": view["event_id"], "attempt": attempt}
    if isinstance(outcome, Delivered):
        failpoint("deliver.after_forward")
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
    deps.queue.send(message, delay_s=delay)
    failpoint("deliver.after_retry_queued")
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

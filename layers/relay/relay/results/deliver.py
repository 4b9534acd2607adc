"""The deliver worker: each queued result is recorded against its execution and counted once per
event id (conditional on its ledger item), and forwarded, signed, to the customer's endpoint by
the message that recorded it; SQS, the platform's retries and the reconciler may each deliver a
copy, and every step is safe to repeat. Failed forwards re-queue the message on the retry
schedule (RESULTS_RETRY_SCHEDULE_S, chained SQS delays beyond 15 minutes); the last one
dead-letters it, and disables forwarding when the endpoint has failed for the whole schedule.
A forward that would not fit the invocation's time left is re-queued rather than cut off by the
Lambda timeout.

A destination that mirrors results onto its own profiles (the registry's ``mirror_plan``) decides
how when the result is recorded - stored with it, in the same transaction - and is handed the
result after it was recorded and before it is forwarded, by the message that recorded it: a crash
in between leaves that message on the queue, and its redelivery finds the stored result and
mirrors it then (the destination takes each result once, whatever is repeated). A message the
queue gives up on is dead-lettered (alarmed) and re-driven with the same token, which mirrors it.
Nothing else records a result, so no recorded result can be left unmirrored without a message."""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from relay.core.backoff import jittered
from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.queue import MAX_DELAY_S, Queue
from relay.core.store import keys
from relay.core.store.table import Table
from relay.executions import registry
from relay.executions.registry import PARKED
from relay.results import links, store
from relay.results.messages import INLINE_EVENT_BYTES, unparked
from relay.results.models import ResultView
from relay.results.settings import ResultsSettings
from relay.results.store import SOURCE

if TYPE_CHECKING:  # the endpoint (and httpx) is imported only where results are forwarded
    from relay.results.endpoint import ResultsEndpoint

logger = Logger(child=True)

Emit = Callable[[str, float], None]


# Time kept free beside the HTTP timeouts for one forward (signing, the DynamoDB calls around it).
FORWARD_MARGIN_S = 2.0


class EventMissing(Exception):
    """A record message without its event, and no ledger item holds it (expired): dead-lettered
    after the queue's receive count, with the message for an operator to look at."""


@dataclass
class DeliverDeps:
    table: Table
    queue: Queue
    settings: ResultsSettings
    endpoint: ResultsEndpoint | None  # None: forwarding is off
    clock: Clock = time.time
    emit: Emit = lambda name, value: None
    links: Table | None = None  # LinksTable; None: the main table
    remaining_ms: Callable[[], int] | None = None  # the invocation's time left; None: unbounded


def handle_message(message: dict[str, Any], deps: DeliverDeps) -> str:
    """One queued message: record it (first time only), then forward it. A message the relay parked
    in the dead-letter queue and an operator moved back (it carries a ``reason``) is re-driven:
    queued again with its attempts reset."""
    if PARKED in message:
        deps.queue.send(unparked(message))
        return "re-driven from the dead-letter queue: queued again, attempts reset"
    kind = message.get("kind")
    if kind == "record":
        view, attempt = record_result(message, deps), 1
        if view is None:
            return "recorded by another message, which forwards it"
        failpoint("deliver.after_count")
        if view.get("mirrors"):
            registry.mirror([view], deps.emit)
            failpoint("deliver.after_mirror")
    elif kind == "forward":  # a retry (or a replay)
        if not_due(message, deps):
            return "retry not due yet: waiting again"
        view, attempt = forwarded_view(message, deps), int(message.get("attempt", 1))
    else:  # a result made elsewhere, ready to forward (e.g. "optimove_status" from the Optimove path)
        view, attempt = {k: v for k, v in message.items() if k != "kind"}, 1
    if deps.endpoint is None:
        return "recorded (forwarding off)"
    return forward(view, attempt, deps)


def record_result(message: dict[str, Any], deps: DeliverDeps) -> dict[str, Any] | None:
    """Link the event to its execution, store it and count it - once per event id, whichever
    message gets there first. Returns the result to forward: this message's, or the stored one
    when this message recorded it before (an SQS redelivery after a crash); None when another
    message recorded it (a copy queued by a platform retry or the reconciler)."""
    source, token = message.get("source") or SOURCE, message.get("token")
    event, received_at = message.get("event"), message.get("received_at")
    if event is None:  # too large to travel, or re-queued by the reconciler: the ledger has it
        mark = store.get_mark(deps.table, source, message["event_id"])
        if mark and mark.get("recorded_at"):
            key = {"pk": mark["result_pk"], "sk": mark["result_sk"]} if mark.get("result_pk") else None
            return _recorded_before(store.Recorded(False, mark.get("recorded_by") or None, key), token, deps)
        if not mark or not mark.get("event_json"):
            raise EventMissing(f"result {message.get('event_id')}: no event in the message or the ledger")
        event = json.loads(mark["event_json"])
        received_at = mark.get("received_iso") or iso(float(mark["received_at"]))
    link = links.find(
        deps.links or deps.table,
        profile_uuid=event.get("profile_uuid"),
        external_id=event.get("external_id"),
        batch_uuid=event.get("batch_uuid"),
    )
    failpoint("deliver.after_link")
    view = result_view(event, received_at, link)
    view["mirrors"] = mirror_plans(view, link)
    now = deps.clock()
    expires_at = int(now + deps.settings.execution_ttl_days * 86_400)
    ledger = {"source": source, "token": token, "ttl_s": deps.settings.webhook_dedupe_ttl_s}
    try:
        outcome = store.record(deps.table, store.item_from(view, expires_at), now, **ledger)
    except store.ExecutionGone:
        view |= {"matched": False, "execution_id": None, "chunk_seq": None, "profile_index": None}
        view["mirrors"] = mirror_plans(view, None)
        outcome = store.record(deps.table, store.item_from(view, expires_at), now, **ledger)
    deps.emit("ResultsMatched" if view["matched"] else "ResultsUnmatched", 1 if outcome.new else 0)
    if outcome.new and store.mirror_skipped(view):
        deps.emit("ResultsMirrorSkipped", 1)
        logger.warning(
            "result not mirrored: listed by GET /v1/results?mirror=skipped",
            extra={"event_id": view["event_id"], "mirrors": view["mirrors"]},
        )
    logger.info(
        "result recorded" if outcome.new else "result already recorded",
        extra={"event_id": view["event_id"], "type": view["type"], "execution_id": view["execution_id"]},
    )
    return view if outcome.new else _recorded_before(outcome, token, deps, view)


def _recorded_before(
    outcome: store.Recorded, token: str | None, deps: DeliverDeps, view: dict[str, Any] | None = None
) -> dict[str, Any] | None:
    if token and outcome.recorded_by and outcome.recorded_by != token:
        return None  # another message recorded it; that one forwards it
    # This message recorded it and crashed before forwarding (or a message of an earlier release
    # did, which carried no token): forward what was stored.
    stored = store.stored(deps.table, outcome.result_key) if outcome.result_key else None
    return full_view(stored) if stored is not None else view


def result_view(event: dict[str, Any], received_at: str, link: dict[str, Any] | None) -> dict[str, Any]:
    """The stored view of an event; the raw payload is carried beside the model, as it came."""
    view = ResultView(
        **{k: v for k, v in event.items() if k != "raw"},
        received_at=received_at,
        matched=link is not None,
        execution_id=(link or {}).get("execution_id"),
        chunk_seq=(link or {}).get("chunk_seq"),
        profile_index=(link or {}).get("profile_index"),
        ref=(link or {}).get("ref"),
    ).model_dump(mode="json")
    view["raw"] = event.get("raw")
    return view


def mirror_plans(view: dict[str, Any], link: dict[str, Any] | None) -> list[dict[str, Any]]:
    """How each destination that mirrors results mirrors this one (no I/O; stored with it). The
    link carries the input profile's attributes those destinations asked to keep."""
    attributes = (link or {}).get("attributes") or {}
    return [plan.model_dump(mode="json") for plan in registry.mirror_plans(view, attributes)]


def not_due(message: dict[str, Any], deps: DeliverDeps) -> bool:
    """A retry due later than SQS can delay a message (15 minutes) travels in hops: re-sent with
    the longest delay it still needs until its time has come."""
    due_at = message.get("due_at")
    if due_at is None:
        return False
    wait = float(due_at) - deps.clock()
    if wait < 1.0:  # SQS delays are whole seconds: within one is on time
        return False
    deps.queue.send(message, delay_s=min(wait, MAX_DELAY_S))
    return True


def forward_message(view: dict[str, Any], attempt: int) -> dict[str, Any]:
    """A forward to try (again): the result itself, or where it is stored when it is too large to
    travel (a quarantined event of a few hundred KB would not fit an SQS message)."""
    message: dict[str, Any] = {"kind": "forward", "result": view, "attempt": attempt}
    if len(json.dumps(view, separators=(",", ":"), default=str)) <= INLINE_EVENT_BYTES:
        return message
    if view.get("received_at") and view.get("event_id") and "matched" in view:  # a stored result
        key = keys.result(view.get("execution_id"), view["received_at"], view["event_id"])
        message["result"] = {"event_id": view["event_id"], "type": view.get("type")}
        message["result_key"] = key
    return message


def forwarded_view(message: dict[str, Any], deps: DeliverDeps) -> dict[str, Any]:
    key = message.get("result_key")
    if not key:
        return message["result"]
    stored = store.stored(deps.table, key)
    if stored is None:
        raise EventMissing(f"result {message['result'].get('event_id')}: not stored at {key}")
    return full_view(stored)


def full_view(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored result's view in its full shape (absent optional fields as null), raw as it came."""
    view = ResultView(**{k: v for k, v in stored.items() if k != "raw"}).model_dump(mode="json")
    view["raw"] = stored.get("raw")
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
    state = store.forwarding_state(deps.table, endpoint.url)
    if state.get("disabled"):
        # Stored, not forwarded: POST /v1/results/replay turns forwarding on and forwards it.
        store.held(deps.table, endpoint.url, deps.clock())
        deps.emit("ResultsNotForwarded", 1)
        return f"not forwarded: forwarding is disabled ({state.get('reason', 'disabled')})"
    msg_id = webhook_id(view)
    budget_s = s.results_connect_timeout_s + s.results_read_timeout_s + FORWARD_MARGIN_S
    if deps.remaining_ms is not None and deps.remaining_ms() < budget_s * 1000:
        # Not enough time left for the HTTP timeouts: forwarded by a message of its own instead of
        # a Lambda timeout in the middle of the request (the batch would come back whole).
        deps.queue.send(forward_message(view, attempt))
        deps.emit("ResultsForwardDeferred", 1)
        return "forward deferred: too little time left in this invocation"
    failpoint("deliver.before_forward")
    outcome = endpoint.post(msg_id, forward_body(view), now=deps.clock())
    log = {"webhook_id": msg_id, "event_id": view["event_id"], "attempt": attempt}
    if isinstance(outcome, Delivered):
        failpoint("deliver.after_forward")
        if state.get("failing_since") is not None:
            store.endpoint_recovered(deps.table, endpoint.url)
        deps.emit("ResultsForwarded", 1)
        return "forwarded"
    if isinstance(outcome, Gone):
        store.disable_forwarding(deps.table, endpoint.url, deps.clock(), "410 Gone")
        deps.emit("ResultsForwardingDisabled", 1)
        logger.critical(
            "RESULTS FORWARDING DISABLED: the results endpoint answered 410 Gone; no result will be "
            "forwarded to it again (configure a new RESULTS_WEBHOOK_URL, or POST /v1/results/replay "
            "to resume)",
            extra=log,
        )
        return "endpoint gone: forwarding disabled"
    schedule = s.retry_schedule()
    if schedule is not None:
        store.endpoint_failing(deps.table, endpoint.url, deps.clock())
    message = forward_message(view, attempt + 1)
    if attempt >= s.results_max_attempts:
        deps.queue.dead_letter(message, f"{outcome.message} after {attempt} attempts")
        deps.emit("ResultsDeadLettered", 1)
        logger.error("result forwarding gave up, dead-lettered", extra={**log, "error": outcome.message})
        if schedule and _failing_for_the_whole_schedule(deps, endpoint.url, schedule):  # no retries: never
            _disable_failing(deps, endpoint.url, schedule, {**log, "error": outcome.message})
            return "dead-lettered: forwarding disabled"
        return "dead-lettered"
    if schedule is None:
        delay = backoff(attempt, s.results_retry_base_s, s.results_retry_max_s, outcome.retry_after_s)
    else:
        delay = scheduled_delay(attempt, schedule, outcome.retry_after_s, s.results_retry_after_max_s)
        message["due_at"] = round(deps.clock() + delay, 3)
    deps.queue.send(message, delay_s=min(delay, MAX_DELAY_S))
    failpoint("deliver.after_retry_queued")
    deps.emit("ResultsForwardRetried", 1)
    logger.warning(
        "result forwarding failed, will retry",
        extra={**log, "error": outcome.message, "delay_s": round(delay, 2)},
    )
    return f"retry in {delay:.0f}s"


def _failing_for_the_whole_schedule(deps: DeliverDeps, url: str, schedule: list[float]) -> bool:
    """No forward has succeeded for as long as the whole schedule: the endpoint is down, not just
    refusing this one result (a result the endpoint alone refuses is only dead-lettered)."""
    since = store.forwarding_state(deps.table, url, consistent=True).get("failing_since")
    return since is not None and deps.clock() - float(since) >= sum(schedule)


def _disable_failing(deps: DeliverDeps, url: str, schedule: list[float], log: dict[str, Any]) -> None:
    reason = f"failing for longer than the retry schedule ({sum(schedule):.0f} s)"
    store.disable_forwarding(deps.table, url, deps.clock(), reason)
    deps.emit("ResultsForwardingDisabled", 1)
    logger.critical(
        "RESULTS FORWARDING DISABLED: the results endpoint has failed every forward for longer than "
        "the retry schedule; results are stored but not forwarded until POST /v1/results/replay",
        extra={**log, "reason": reason},
    )


def scheduled_delay(
    attempt: int, schedule: list[float], retry_after_s: float | None, retry_after_max_s: float
) -> float:
    """The schedule's delay after this attempt, up to 10% later (jitter: retries of a burst do not
    arrive together); never sooner than the endpoint's Retry-After (read as at most the cap)."""
    delay = schedule[min(attempt, len(schedule)) - 1] * (1 + 0.1 * random.random())
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, retry_after_max_s))
    return delay


def backoff(attempt: int, base_s: float, max_s: float, retry_after_s: float | None) -> float:
    """Exponential with jitter; never sooner than the endpoint's Retry-After (the back-off used
    when no retry schedule is configured)."""
    delay = jittered(attempt, base_s, max_s)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, 900.0))
    return delay

"""Sending one Optimove run: slot from the brand limiter, queued -> sending, call, record.

The conditional move queued -> sending is what makes SQS redelivery harmless: only the worker
that made it calls Optimove. Outcomes: 202 stores Optimove's execution id and queues the first
status poll; 429 goes back to queued and is retried after Retry-After (never lost, no attempt
counted); 5xx / unreachable is retried with exponential backoff and jitter, at most
OPTIMOVE_MAX_ATTEMPTS, then dead-lettered; 4xx is final (`failed` with the upstream's answer).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.backoff import full_jitter
from relay.core.failpoints import failpoint
from relay.core.limiter import Limiter, pause_until, per_second
from relay.core.store import keys
from relay.core.store.table import ConditionFailed, Table
from relay.destinations.optimove import store
from relay.destinations.optimove.client import Accepted, Ambiguous, OptimoveClient, RateLimited, Rejected
from relay.destinations.optimove.models import RunRequest
from relay.destinations.optimove.queues import RunQueues
from relay.destinations.optimove.results import forward_result
from relay.destinations.optimove.settings import OptimoveSettings

logger = Logger(child=True)

# A `sending` older than this was interrupted (the worker died mid-call): redelivery finds it.
STALE_SENDING_S = 120.0


@dataclass
class OptimoveDeps:
    table: Table
    queues: RunQueues
    client: OptimoveClient
    settings: OptimoveSettings
    sqs: Any = None
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    emit: Callable[[str, float], None] = field(default=lambda name, value: None)

    def limiter(self) -> Limiter:
        s = self.settings
        return per_second(
            self.table,
            f"optimove-brand#{keys.token_fingerprint(s.optimove_keys()[1])}",
            s.optimove_brand_rps,
            min_bucket_s=s.optimove_limit_bucket_min_s,
            clock=self.clock,
            sleep=self.sleep,
        )


def _finish(deps: OptimoveDeps, item: dict[str, Any]) -> None:
    forward_result(item, deps.settings, deps.sqs)


def settle_interrupted(execution_id: str, deps: OptimoveDeps) -> bool:
    """A `sending` whose worker died (after its claim, maybe after its call): `unknown`, never
    re-sent - Optimove may have run it and has no de-duplication. False: it moved on meanwhile."""
    try:
        done = store.transition(
            deps.table,
            execution_id,
            allowed_from=["sending"],
            to="unknown",
            now=deps.clock(),
            add={"attempts": 1},  # the interrupted call may have been made: it counts
            fields={
                "error_code": "send_interrupted",
                "error_message": "the send was interrupted; "
                "Optimove may or may not have run it (not re-sent: it has no de-duplication)",
            },
        )
    except ConditionFailed:
        return False
    _finish(deps, done)
    return True


def release_now(execution_id: str, item: dict[str, Any], deps: OptimoveDeps) -> dict[str, Any] | None:
    """scheduled -> queued for a run whose send message came before its release was recorded (the
    scheduler queues the message first): the item as written, or None when it is not due yet or
    no longer scheduled (cancelled)."""
    now = deps.clock()
    send_at = float(item.get("send_at") or now)
    if send_at - now > 1.0:
        deps.queues.send(execution_id, delay_s=min(send_at - now, 900.0))
        return None
    try:
        return store.transition(
            deps.table,
            execution_id,
            allowed_from=["scheduled"],
            to="queued",
            now=now,
            fields={"released_at": now},
            due=now,
            note="released by its send message",
        )
    except ConditionFailed:
        return None


def send_one(execution_id: str, deps: OptimoveDeps) -> str:
    s, table = deps.settings, deps.table
    item = store.get(table, execution_id)
    if not item:
        return "no such execution"
    status = item["status"]
    if status == "sending":
        if deps.clock() - float(item.get("sending_at", 0)) < STALE_SENDING_S:
            return "being sent elsewhere"
        if not settle_interrupted(execution_id, deps):
            return "moved on"
        return "interrupted send marked unknown"
    if status == "dead_lettered":
        # The message that dead-lettered it, delivered again: its worker may have died before
        # parking it for `relay dlq redrive` (a second entry is harmless: re-driving checks the
        # status) and handing the status on (forwarded with a stable webhook-id).
        deps.queues.dead_letter(execution_id, str(item.get("error_message") or "dead-lettered"))
        _finish(deps, item)
        return "dead-lettered: parked again"
    if status == "scheduled":
        released = release_now(execution_id, item, deps)
        if released is None:
            return "not due yet (or cancelled)"
        item, status = released, "queued"
    if status != "queued":
        return f"nothing to do: {status}"

    limiter = deps.limiter()
    slot = limiter.acquire(s.optimove_max_inline_wait_s)
    if slot is None:
        return _wait_for_slot(execution_id, item, deps, "no slot yet, re-queued")
    failpoint("optimove.send.after_slot")
    now = deps.clock()
    try:
        store.transition(
            table,
            execution_id,
            allowed_from=["queued"],
            to="sending",
            now=now,
            fields={"sending_at": now},
            due=now,
        )
    except ConditionFailed:
        return "taken elsewhere (or cancelled)"
    failpoint("optimove.send.after_claim")
    if not limiter.still_valid(slot) and limiter.acquire(s.optimove_max_inline_wait_s) is None:
        # The write outlasted the slot (a request made now could land in the next second beside
        # another sender's) and no fresh one came in time: back to queued, nothing was sent.
        delay = random.uniform(1, 3)
        store.transition(
            table,
            execution_id,
            allowed_from=["sending"],
            to="queued",
            now=deps.clock(),
            note="slot expired",
            due=deps.clock() + delay,
        )
        failpoint("optimove.send.after_requeue")
        deps.queues.send(execution_id, delay_s=delay)
        deps.emit("OptimoveSlotWaits", 1)
        return "slot expired, re-queued"
    request = RunRequest(topic_key=item["topic_key"], context=json.loads(item["context_json"]))
    outcome = deps.client.run(item["event_generator_id"], request)
    failpoint("optimove.send.after_call")
    return record(execution_id, item, outcome, deps)


def _wait_for_slot(execution_id: str, item: dict[str, Any], deps: OptimoveDeps, outcome: str) -> str:
    """Queue the run again in a moment: the brand's slots are taken for now. A run that waits
    longer than the reconciler's patience moves its due time on, so it is not taken for lost."""
    delay = random.uniform(1, 3)
    deps.queues.send(execution_id, delay_s=delay)
    now = deps.clock()
    if float(item.get("due_at") or now) < now - deps.settings.relay_reconcile_after_s / 2:
        store.touch_due(deps.table, execution_id, "queued", now + delay)
    deps.emit("OptimoveSlotWaits", 1)
    return outcome


def record(execution_id: str, item: dict[str, Any], outcome: Any, deps: OptimoveDeps) -> str:
    s, now = deps.settings, deps.clock()
    # Every call counts as an attempt, the one that succeeds too; a 429 does not (it is counted as
    # `rate_limited`: the upstream refused to take the call).
    attempts = int(item.get("attempts", 0))
    # Every outcome moves the run out of `sending`, and only from there (SQS may redeliver).
    leave_sending = partial(store.transition, deps.table, execution_id, allowed_from=["sending"], now=now)
    if isinstance(outcome, Accepted):
        # Queue the first poll, carrying Optimove's execution id, before recording: a crash
        # between the two leaves a poll that finds `sending` and records the run itself, never an
        # accepted run that nobody follows.
        optimove_id = outcome.run.execution_id
        first_poll = s.optimove_poll_first_delay_s
        deps.queues.poll(execution_id, attempt=1, delay_s=first_poll, optimove_execution_id=optimove_id)
        failpoint("optimove.send.after_poll_enqueue")
        try:
            leave_sending(
                to="accepted",
                fields={
                    "optimove_execution_id": optimove_id,
                    "upstream_status": outcome.run.status,
                    "sent_at": now,
                    "poll_seq": 1,
                    "attempts": attempts + 1,
                },
                remove=["last_error"],
                due=now + first_poll,
            )
        except ConditionFailed:
            return "accepted (recorded by its first poll)"
        failpoint("optimove.send.after_record")
        deps.emit("OptimoveRunsAccepted", 1)
        logger.info("optimove run accepted", extra={"execution_id": execution_id})
        return "accepted"
    if isinstance(outcome, RateLimited):
        pause_until(outcome.retry_at)
        leave_sending(
            to="queued",
            fields={"last_error": {"status": 429, "message": "rate limited by Optimove"}},
            add={"rate_limited": 1},
            note="429: retry after Retry-After",
            due=max(now, outcome.retry_at),
        )
        failpoint("optimove.send.after_requeue")
        deps.queues.send(execution_id, delay_s=max(0.0, outcome.retry_at - now))
        deps.emit("OptimoveRateLimited", 1)
        return "rate limited, re-queued"
    if isinstance(outcome, Rejected):
        done = leave_sending(
            to="failed",
            fields={
                "error_code": f"http_{outcome.status}",
                "error_message": outcome.message,
                "upstream_http_status": outcome.status,
                "attempts": attempts + 1,
            },
        )
        _finish(deps, done)
        deps.emit("OptimoveRunsRejected", 1)
        return f"rejected {outcome.status}"
    if isinstance(outcome, Ambiguous) and not s.optimove_resend_ambiguous:
        done = leave_sending(
            to="unknown",
            fields={"error_code": "ambiguous", "error_message": outcome.message, "attempts": attempts + 1},
        )
        _finish(deps, done)
        return "ambiguous"
    # Unavailable (or an ambiguous answer with OPTIMOVE_RESEND_AMBIGUOUS): retry, bounded.
    message = outcome.message
    status = getattr(outcome, "status", None)
    attempts += 1
    if attempts >= s.optimove_max_attempts:
        done = leave_sending(
            to="dead_lettered",
            fields={
                "attempts": attempts,
                "error_code": f"http_{status}" if status else "unreachable",
                "error_message": message,
            },
        )
        failpoint("optimove.send.after_dead_lettered")
        deps.queues.dead_letter(execution_id, message)
        _finish(deps, done)
        deps.emit("OptimoveRunsDeadLettered", 1)
        return "dead-lettered"
    delay = full_jitter(attempts, s.optimove_retry_base_s, s.optimove_retry_max_s)
    leave_sending(
        to="queued",
        fields={"attempts": attempts, "last_error": {"status": status, "message": message}},
        note=f"retry {attempts}: {message}",
        due=now + delay,
    )
    failpoint("optimove.send.after_requeue")
    deps.queues.send(execution_id, delay_s=delay)
    return f"unavailable, retry {attempts}"

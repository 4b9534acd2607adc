"""Applying an audience write: its calls, one after the other, each through the project limiter.

A worker applies only the audience's current write (the one after the last released): a message
for a later write does nothing, since the write before it queues it when it releases the
audience. Each call is claimed by a conditional move ``queued -> sending`` that names the call
(``calls_made``), so SQS redelivery never makes a call twice; its answer moves the write back to
``queued`` for its next call, or on to ``indexing`` (or a terminal status) while releasing the
audience's next write in the same transaction.

Batch's answers: 202 records the call's indexing token; 429 (no Retry-After documented) is
retried after a growing back-off, or after the header's time when one comes; 5xx and unreachable
are retried with back-off for BATCH_RETRY_FOR_S, then `failed`; 400/401 are `failed` with Batch's
error_code and error_message; a timeout after the request was sent is `ambiguous` (Batch may have
applied it), or sent again with BATCH_RESEND_AMBIGUOUS.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.backoff import full_jitter, jittered
from relay.core.failpoints import failpoint
from relay.core.limiter import Limiter, pause_until
from relay.core.outcomes import Ambiguous, RateLimited
from relay.core.store.table import ConditionFailed, Table
from relay.destinations.batch.audiences import split, store
from relay.destinations.batch.audiences.models import TERMINAL
from relay.destinations.batch.audiences.queues import AudienceQueue
from relay.destinations.batch.settings import BatchSettings

logger = Logger(child=True)

Emit = Callable[[str, float], None]


@dataclass
class AudienceDeps:
    table: Table
    queue: AudienceQueue
    client: Any  # BatchClient: .call(method, path, json=, params=) -> typed outcome
    limiter: Limiter
    settings: BatchSettings
    clock: Callable[[], float] = time.time
    emit: Emit = field(default=lambda name, value: None)


def is_current(item: dict[str, Any], deps: AudienceDeps) -> bool:
    """Whether every write accepted before this one has released the audience."""
    return int(store.sequence(deps.table, item["audience"]).get("released", 0)) >= int(item["seq"]) - 1


def wake_successor(item: dict[str, Any], deps: AudienceDeps) -> None:
    """Queue the audience's next write, if one was accepted (it may also be queued by its own
    accept or the reconciler: a second message is harmless)."""
    following = store.successor(deps.table, item)
    if following:
        deps.queue.write(following)


def releases_at_indexing(deps: AudienceDeps) -> bool:
    return not deps.settings.batch_audience_wait_for_indexing


def apply_write(execution_id: str, deps: AudienceDeps, remaining_ms: Callable[[], int]) -> str:
    item = store.get(deps.table, execution_id)
    if not item:
        return "no such execution"
    status = item["status"]
    if status == "sending":
        if deps.clock() - float(item.get("sending_at") or 0) < deps.settings.batch_audience_stale_sending_s:
            return "being sent elsewhere"
        return settle_interrupted(item, deps)
    if status == "indexing" or status in TERMINAL:
        # Delivered again after its last call was recorded: its worker may have stopped before
        # queueing what follows (the first poll, the next write); both are safe to repeat.
        if status == "indexing":
            deps.queue.poll(execution_id, attempt=int(item.get("poll_seq") or 1), delay_s=0)
        if (status == "indexing" and releases_at_indexing(deps)) or status in TERMINAL:
            wake_successor(item, deps)
        return f"nothing to send: {status}"
    if status != "queued":
        return f"nothing to do: {status}"
    if not is_current(item, deps):
        return f"waiting for write {int(item['seq']) - 1} of audience {item['audience']}"
    s = deps.settings
    while True:
        if remaining_ms() < s.batch_audience_reserve_ms:
            deps.queue.write(execution_id)
            return "deferred: too little time left in this invocation"
        made = int(item.get("calls_made", 0))
        entries = store.entries_of_call(deps.table, item, made, int(item.get("per_call") or 1))
        # Held until the call is answered: the project's next call goes a second after that.
        slot = deps.limiter.acquire_until_answered(s.batch_audience_max_inline_wait_s)
        if slot is None:
            return wait_for_slot(item, deps)
        failpoint("batch.audience.after_slot")
        now = deps.clock()
        try:
            item = store.transition(
                deps.table,
                execution_id,
                allowed_from=["queued"],
                to="sending",
                now=now,
                fields={"sending_at": now},
                due=now + s.batch_audience_stale_sending_s,
                calls_made=made,
                logged=made == 0,
            )
        except ConditionFailed:
            deps.limiter.answered(slot, None)
            return "taken elsewhere"
        failpoint("batch.audience.after_claim")
        if not deps.limiter.still_valid(slot):
            deps.limiter.answered(slot, None)
            slot = deps.limiter.acquire_until_answered(s.batch_audience_max_inline_wait_s)
        if slot is None:
            # The claim outlasted the slot and no fresh one came in time: nothing was sent.
            store.transition(
                deps.table,
                execution_id,
                allowed_from=["sending"],
                to="queued",
                now=deps.clock(),
                due=deps.clock(),
                logged=False,
            )
            failpoint("batch.audience.after_requeue")
            return wait_for_slot(item, deps)
        path, body = split.call_request(
            item["operation"], item["audience"], made, entries, display_name=item.get("display_name")
        )
        outcome = deps.client.call("POST", path, json=body)
        deps.limiter.answered(slot, deps.clock())
        failpoint("batch.audience.after_call")
        item, result = record(item, made, len(entries), outcome, deps)
        if item is None:
            return result


def wait_for_slot(item: dict[str, Any], deps: AudienceDeps) -> str:
    """The project's slots are taken for longer than is worth sleeping: queued again shortly."""
    delay = random.uniform(1, 2)
    deps.queue.write(item["execution_id"], delay_s=delay)
    store.touch_due(deps.table, item["execution_id"], "queued", deps.clock() + delay)
    deps.emit("BatchAudienceSlotWaits", 1)
    return "no slot yet, re-queued"


def record(
    item: dict[str, Any], made: int, ids: int, outcome: Any, deps: AudienceDeps
) -> tuple[dict[str, Any] | None, str]:
    """The write after call ``made``'s answer: (item, "") to go on with its next call, or
    (None, what happened) when this message is done."""
    from relay.destinations.batch.client import Accepted, Rejected

    s, now, execution_id = deps.settings, deps.clock(), item["execution_id"]
    leave = dict(allowed_from=["sending"], now=now, calls_made=made)
    if isinstance(outcome, Accepted):
        call = {"n": made, "ids": ids, "indexing_token": outcome.body.get("indexing_token"), "sent_at": now}
        fields: dict[str, Any] = {"calls_made": made + 1, "rate_limited_streak": 0}
        cleared = ["last_error", "failing_since"]
        if made + 1 < int(item["calls_total"]):
            try:
                item = store.transition(
                    deps.table,
                    execution_id,
                    **leave,
                    to="queued",
                    fields=fields,
                    remove=cleared,
                    append={"calls": [call]},
                    due=now,
                    logged=False,
                )
            except ConditionFailed:
                return None, "moved on elsewhere"
            failpoint("batch.audience.after_record")
            return item, ""
        return None, calls_done(item, call, fields, cleared, deps)
    if isinstance(outcome, RateLimited):
        streak = int(item.get("rate_limited_streak", 0)) + 1
        delay = outcome.retry_at - now if outcome.retry_at > now else 0.0
        delay = max(delay, jittered(streak, s.batch_retry_after_default_s, s.batch_retry_max_s))
        pause_until(now + delay)
        return None, requeue(
            item,
            deps,
            delay,
            leave,
            fields={"rate_limited_streak": streak, "last_error": "429 from Batch"},
            add={"rate_limited": 1},
            note="429: retried after a back-off",
            result="rate limited, re-queued",
        )
    if isinstance(outcome, Rejected):
        deps.emit("BatchAudienceWritesRejected", 1)
        return None, finish(
            item,
            "failed",
            {
                "error_code": outcome.error_code or f"HTTP_{outcome.status}",
                "error_message": outcome.error_message,
                "upstream_http_status": outcome.status,
            },
            deps,
            leave,
        )
    if isinstance(outcome, Ambiguous) and not s.batch_resend_ambiguous:
        return None, finish(
            item, "ambiguous", {"error_code": "ambiguous", "error_message": outcome.message}, deps, leave
        )
    # Unavailable (or Ambiguous with BATCH_RESEND_AMBIGUOUS): retried for BATCH_RETRY_FOR_S.
    status = getattr(outcome, "status", None)
    since = float(item.get("failing_since") or now)
    attempts = int(item.get("attempts", 0)) + 1
    if now - since >= s.batch_retry_for_s:
        return None, finish(
            item,
            "failed",
            {
                "attempts": attempts,
                "error_code": "unavailable",
                "error_message": f"no answer after {s.batch_retry_for_s:g}s of retries: {outcome.message}",
                "upstream_http_status": status,
            },
            deps,
            leave,
        )
    delay = full_jitter(attempts, s.batch_retry_base_s, s.batch_retry_max_s)
    return None, requeue(
        item,
        deps,
        delay,
        leave,
        fields={"attempts": attempts, "failing_since": since, "last_error": outcome.message[:500]},
        note=f"retry {attempts}: {outcome.message}",
        result=f"unavailable, retry {attempts}",
    )


def requeue(
    item: dict[str, Any],
    deps: AudienceDeps,
    delay: float,
    leave: dict[str, Any],
    *,
    fields: dict[str, Any],
    note: str,
    result: str,
    add: dict[str, int] | None = None,
) -> str:
    now = deps.clock()
    try:
        store.transition(
            deps.table,
            item["execution_id"],
            **leave,
            to="queued",
            fields=fields,
            add=add,
            note=note,
            due=now + delay,
        )
    except ConditionFailed:
        return "moved on elsewhere"
    failpoint("batch.audience.after_requeue")
    deps.queue.write(item["execution_id"], delay_s=delay)
    return result


def calls_done(
    item: dict[str, Any], call: dict[str, Any], fields: dict[str, Any], cleared: list[str], deps: AudienceDeps
) -> str:
    """The last call was accepted: follow its indexing (a remove has none to follow)."""
    s, now, execution_id = deps.settings, deps.clock(), item["execution_id"]
    leave = dict(allowed_from=["sending"], now=now, calls_made=int(call["n"]))
    change: dict[str, Any] = dict(leave, fields=fields, remove=cleared, append={"calls": [call]})
    if item["operation"] == "remove":
        return finish(item, "removed", {**fields, "ready_at": now}, deps, leave, append={"calls": [call]})
    first = s.batch_indexing_poll_first_s
    change |= dict(to="indexing", due=now + first)
    change["fields"] = {**fields, "poll_seq": 1, "calls_done_at": now}
    try:
        if releases_at_indexing(deps):
            store.transition_and_release(deps.table, item, **change)
        else:
            store.transition(deps.table, execution_id, **change)
    except ConditionFailed:
        return "moved on elsewhere"
    failpoint("batch.audience.after_record")
    deps.queue.poll(execution_id, attempt=1, delay_s=first)
    failpoint("batch.audience.after_poll_enqueue")
    if releases_at_indexing(deps):
        wake_successor(item, deps)
    deps.emit("BatchAudienceWritesSent", 1)
    logger.info(
        "audience write sent",
        extra={"execution_id": execution_id, "audience": item["audience"], "calls": call["n"] + 1},
    )
    return "sent, indexing"


def finish(
    item: dict[str, Any],
    to: str,
    fields: dict[str, Any],
    deps: AudienceDeps,
    leave: dict[str, Any],
    *,
    append: dict[str, list[Any]] | None = None,
) -> str:
    """A terminal status, releasing the audience's next write in the same transaction."""
    try:
        store.transition_and_release(deps.table, item, **leave, to=to, fields=fields, append=append)
    except ConditionFailed:
        return "moved on elsewhere"
    failpoint("batch.audience.after_release")
    wake_successor(item, deps)
    deps.emit(f"BatchAudienceWrites_{to}", 1)
    if to in ("failed", "ambiguous"):
        logger.warning(
            "audience write ended",
            extra={
                "execution_id": item["execution_id"],
                "status": to,
                "error_code": fields.get("error_code"),
            },
        )
    return to


def settle_interrupted(item: dict[str, Any], deps: AudienceDeps) -> str:
    """A call claimed long ago and never recorded (its worker died after the claim, maybe after
    the call): `ambiguous`, or queued to be made again with BATCH_RESEND_AMBIGUOUS (the audience
    is still held by this write, so nothing later was applied in between)."""
    made = int(item.get("calls_made", 0))
    leave = dict(allowed_from=["sending"], now=deps.clock(), calls_made=made)
    if deps.settings.batch_resend_ambiguous:
        return requeue(
            item,
            deps,
            0,
            leave,
            fields={},
            note=f"call {made} interrupted: made again (BATCH_RESEND_AMBIGUOUS)",
            result="interrupted call re-queued",
        )
    fields = {
        "error_code": "send_interrupted",
        "error_message": f"call {made} was interrupted; Batch may or may not have applied it",
    }
    return finish(item, "ambiguous", fields, deps, leave)

"""Accepting an Optimove trigger: check the context, de-duplicate, store, schedule or queue."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.optimove import NAME, store
from relay.destinations.optimove.models import OptimoveTrigger, OptimoveTriggerAccepted
from relay.destinations.optimove.queues import RunQueues
from relay.destinations.optimove.schemas import SchemaRegistry
from relay.destinations.optimove.settings import OptimoveSettings
from relay.executions.requests import IdempotencyConflict

# A send_at closer than this is simply sent now.
SCHEDULE_THRESHOLD_S = 1.0


@dataclass
class OptimoveAcceptDeps:
    table: Table
    queues: RunQueues
    schemas: SchemaRegistry
    settings: OptimoveSettings
    clock: Clock


def dedupe_hash(trigger: OptimoveTrigger, window_s: int) -> tuple[str | None, int]:
    """(hash, window) of the trigger's de-duplication key, or (None, 0) when it has none."""
    if trigger.dedupe_key:
        return hashlib.sha256(f"key\n{trigger.dedupe_key}".encode()).hexdigest(), window_s
    canonical = json.dumps(
        {"g": trigger.event_generator_id, "t": trigger.topic_key, "c": trigger.context},
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(f"content\n{canonical}".encode()).hexdigest(), window_s


def never_left_accept(item: dict[str, Any]) -> bool:
    """Queued by the accept and nothing since: its one message may never have been sent. A run
    queued again later (a retry's back-off, a 429's Retry-After) is not queued early here."""
    return item.get("status") == "queued" and len(item.get("transitions") or []) <= 1


def accept_optimove(
    trigger: OptimoveTrigger, *, execution_id: str, request_hash: str, caller: str, deps: OptimoveAcceptDeps
) -> OptimoveTriggerAccepted:
    settings, table, now = deps.settings, deps.table, deps.clock()
    deps.schemas.check(trigger.event_generator_id, trigger.context)

    key_hash, window = None, 0
    if trigger.dedupe_key:
        key_hash, window = dedupe_hash(
            trigger, settings.optimove_dedupe_window_s or settings.optimove_dedupe_key_window_s
        )
    elif settings.optimove_dedupe_window_s > 0:
        key_hash, window = dedupe_hash(trigger, settings.optimove_dedupe_window_s)

    send_at = trigger.send_at.timestamp() if trigger.send_at else None
    scheduled = send_at is not None and send_at - now > SCHEDULE_THRESHOLD_S
    status = "scheduled" if scheduled else "queued"
    created_iso = iso(now)
    execution = {
        **keys.execution(execution_id),
        "kind": "execution",
        "execution_id": execution_id,
        "destination": NAME,
        "status": status,
        "transitions": [{"status": status, "at": now}],
        "event_generator_id": trigger.event_generator_id,
        "topic_key": trigger.topic_key,
        "context_json": json.dumps(trigger.context, separators=(",", ":")),
        "send_at": send_at,
        "timezone": trigger.timezone,
        "dedupe_key": trigger.dedupe_key,
        "dedupe_hash": key_hash,
        "attempts": 0,
        "created_at": now,
        "created_iso": created_iso,
        "updated_at": now,
        "caller": caller,
        "body_hash": request_hash,
        **keys.executions_listing(execution_id, created_iso),
        "expires_at": int(now + settings.execution_ttl_days * 86_400),
    }
    if send_at:
        execution |= keys.run_time(iso(send_at), execution_id)
    if scheduled:
        execution |= {
            "gsi2pk": keys.scheduled_partition(NAME),
            "gsi2sk": keys.scheduled_sort(iso(send_at), execution_id),
        }
    else:
        execution |= store.due_keys(execution_id, now)
    answer = OptimoveTriggerAccepted(
        execution_id=execution_id, status=status, send_at=iso(send_at) if send_at else None
    )
    try:
        store.create(table, execution, dedupe_hash=key_hash, dedupe_expires_at=int(now + window), now=now)
    except store.Duplicate as duplicate:
        existing = store.get(table, duplicate.existing_execution_id) or {}
        # The first request may have died between storing and queueing (its client got a 500 and
        # retries with the same dedupe_key): queue it again, or it would never run.
        if never_left_accept(existing):
            deps.queues.send(duplicate.existing_execution_id)
        return OptimoveTriggerAccepted(
            execution_id=duplicate.existing_execution_id,
            status=str(existing.get("status", "queued")),
            duplicate=True,
            send_at=iso(existing["send_at"]) if existing.get("send_at") else None,
        )
    except store.AlreadyExists as exists:
        if exists.existing.get("body_hash") != request_hash:
            raise IdempotencyConflict(execution_id) from exists
        # A retry of a request that may have died before queueing: queue again (a second message
        # is harmless, the send is guarded by queued -> sending).
        if never_left_accept(exists.existing):
            deps.queues.send(execution_id)
        existing_send_at = exists.existing.get("send_at")
        return OptimoveTriggerAccepted(
            execution_id=execution_id,
            status=str(exists.existing.get("status")),
            send_at=iso(existing_send_at) if existing_send_at else None,
        )
    failpoint("optimove.accept.after_dedupe")
    if not scheduled:
        deps.queues.send(execution_id)
        failpoint("optimove.accept.after_enqueue")
    return answer

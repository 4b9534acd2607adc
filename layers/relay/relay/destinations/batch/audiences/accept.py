"""Accepting an audience write: its ids stored, its place in the audience's sequence taken, its
message queued. The answer is 202 with the execution id whatever the audience's queue holds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from relay.core.clock import Clock, iso
from relay.core.failpoints import failpoint
from relay.core.http import ApiError
from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.batch import NAME
from relay.destinations.batch.audiences import split, store
from relay.destinations.batch.audiences.models import AudienceWriteAccepted, Operation
from relay.destinations.batch.audiences.queues import AudienceQueue
from relay.destinations.batch.settings import BatchSettings
from relay.executions.requests import IdempotencyConflict

# What an execution item says it is, beside its destination (the destination has other work).
KIND = "audience"


@dataclass
class AudienceAcceptDeps:
    table: Table
    queue: AudienceQueue
    settings: BatchSettings
    clock: Clock


def never_left_accept(item: dict[str, Any]) -> bool:
    """Queued by its accept and nothing since: its message may never have been sent."""
    return item.get("status") == "queued" and len(item.get("transitions") or []) <= 1


def answer_of(item: dict[str, Any]) -> AudienceWriteAccepted:
    return AudienceWriteAccepted(
        execution_id=item["execution_id"],
        status=str(item.get("status")),
        audience=item["audience"],
        operation=item["operation"],
        sequence=int(item.get("seq", 0)),
        ids=int(item.get("ids_total", 0)),
        calls=int(item.get("calls_total", 1)),
    )


def accept_write(
    operation: Operation,
    name: str,
    *,
    entries: list[dict[str, Any]] | None = None,
    display_name: str | None = None,
    execution_id: str,
    request_hash: str,
    caller: str,
    deps: AudienceAcceptDeps,
) -> AudienceWriteAccepted:
    settings, table, now = deps.settings, deps.table, deps.clock()
    entries = entries or []
    expires_at = int(now + settings.execution_ttl_days * 86_400)
    created_iso = iso(now)
    execution: dict[str, Any] = {
        **keys.execution(execution_id),
        "kind": "execution",
        "execution_id": execution_id,
        "destination": NAME,
        "batch_kind": KIND,
        "operation": operation,
        "audience": name,
        "display_name": display_name,
        "status": "queued",
        "transitions": [{"status": "queued", "at": now}],
        "ids_total": len(entries),
        "per_call": settings.batch_audience_ids_per_call,
        "calls_total": split.calls_needed(operation, len(entries), settings.batch_audience_ids_per_call),
        "calls_made": 0,
        "calls": [],
        "call_states": {},
        "attempts": 0,
        "created_at": now,
        "created_iso": created_iso,
        "updated_at": now,
        "caller": caller,
        "body_hash": request_hash,
        **keys.executions_listing(execution_id, created_iso),
        **store.due_keys(execution_id, now),
        "expires_at": expires_at,
    }
    if entries:
        try:
            cut = split.parts(entries)
        except split.EntryTooLarge as too_large:
            raise ApiError(413, "id_too_large", str(too_large)) from too_large
        execution["part_starts"] = store.put_parts(table, execution_id, cut, expires_at)
        failpoint("batch.audience.accept.after_parts")
    try:
        store.create(table, execution)
    except store.AlreadyExists as exists:
        if exists.existing.get("body_hash") != request_hash:
            raise IdempotencyConflict(execution_id) from exists
        # A retry of a request that may have died before queueing: queue again (a second message
        # is harmless, every call is guarded by the write's status and calls made).
        if never_left_accept(exists.existing):
            deps.queue.write(execution_id)
        return answer_of(exists.existing)
    failpoint("batch.audience.accept.after_store")
    deps.queue.write(execution_id)
    return answer_of(execution)

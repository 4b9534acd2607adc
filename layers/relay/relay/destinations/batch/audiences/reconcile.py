"""Moving on audience writes that nothing in flight moves (the reconciler, every minute).

A write under way is on gsi2 by when its next step is due: its message (queued), its call's end
(sending), its next indexing read (indexing). Overdue by RELAY_RECONCILE_AFTER_S, its message was
lost between two side effects. Each repair is safe to repeat: a second write message does nothing
unless the write is the audience's current one and its call not claimed; a second poll is dropped
by the ``poll_seq`` guard. A queued write still behind an earlier one only has its due time moved:
the earlier write queues it when it releases the audience.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.store import keys
from relay.destinations.batch.audiences import store
from relay.destinations.batch.audiences.models import TERMINAL
from relay.destinations.batch.audiences.send import AudienceDeps, is_current, settle_interrupted

logger = Logger(child=True)


def reconcile(deps: AudienceDeps, now: float, stale_before: float) -> dict[str, int]:
    repairs: Counter[str] = Counter()
    for entry in store.overdue(deps.table, stale_before):
        item = store.get(deps.table, entry["execution_id"])
        if not item or float(item.get("due_at") or now) >= stale_before:
            continue  # moved on since the index was read
        kind = repair(deps, item, now, stale_before)
        if kind:
            repairs[kind] += 1
            if kind != "BatchAudienceWritesWaiting":
                extra = {"execution_id": item["execution_id"], "status": item["status"], "repair": kind}
                logger.warning("audience write repaired", extra=extra)
    return dict(repairs)


def repair(deps: AudienceDeps, item: dict[str, Any], now: float, stale_before: float) -> str | None:
    execution_id, status = item["execution_id"], item["status"]
    if status == "queued":
        if not is_current(item, deps):
            store.touch_due(deps.table, execution_id, "queued", now)
            return "BatchAudienceWritesWaiting"
        store.touch_due(deps.table, execution_id, "queued", now, repair=True)
        deps.queue.write(execution_id)
        return "BatchAudienceWritesRequeued"
    if status == "sending":
        # Never a call that may still be under way, however short RELAY_RECONCILE_AFTER_S is.
        stale_s = deps.settings.batch_audience_stale_sending_s
        if float(item.get("sending_at") or now) >= min(stale_before, now - stale_s):
            return None
        settled = settle_interrupted(item, deps)
        return "BatchAudienceCallsSettled" if settled != "moved on elsewhere" else None
    if status == "indexing":
        store.touch_due(deps.table, execution_id, "indexing", now, repair=True)
        deps.queue.poll(execution_id, attempt=int(item.get("poll_seq") or 1), delay_s=0)
        return "BatchAudiencePollsRequeued"
    if status in TERMINAL:
        deps.table.update(keys.execution(execution_id), "REMOVE " + ", ".join(store.DUE_ATTRIBUTES))
        return "BatchAudienceDueEntriesCleared"
    return None

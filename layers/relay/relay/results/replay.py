"""POST /v1/results/replay: forwarding on again, and the results of a window forwarded once more.

Each stored result is indexed by the day it was received (``keys.received_index``); the replay
queues one "forward" message per result in the window, by reference to where it is stored, so
the deliver worker forwards it with its original webhook-id (the customer de-duplicates) and
retries it on the schedule like any other. At most ``MAX_PER_REQUEST`` a call (the API has 29 s):
a truncated answer names where the next call continues. Results stored before this index existed
are not found.
"""

from __future__ import annotations

from relay.core.clock import Clock, iso
from relay.core.queue import Queue
from relay.core.store.table import Table
from relay.results import store
from relay.results.models import ReplayAccepted, ReplayRequest

MAX_PER_REQUEST = 5_000


def replay(
    table: Table,
    queue: Queue,
    url: str,
    request: ReplayRequest,
    *,
    clock: Clock,
    limit: int = MAX_PER_REQUEST,
) -> ReplayAccepted:
    now = clock()
    since = iso(request.since.timestamp())
    until = iso(request.until.timestamp() if request.until else now)
    window = {"since": since, "until": until, "type": request.type, "at": now}
    before = store.enable_forwarding(table, url, now, {k: v for k, v in window.items() if v is not None})
    found = list(store.received_between(table, since, until, type_=request.type, limit=limit + 1))
    found.sort(key=lambda entry: entry[0]["sk"].split("#", 1)[1])  # RESULT#<received>#<event_id>
    truncated = len(found) > limit
    next_since = _received(found[limit][0]) if truncated else None
    messages = [
        {
            "kind": "forward",
            "result": {"event_id": event_id, "type": type_},
            "result_key": key,
            "attempt": 1,
            "replay": True,
        }
        for key, type_, event_id in found[:limit]
    ]
    failed = queue.send_many(messages)
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(messages)} replayed results could not be queued")
    return ReplayAccepted(
        queued=len(messages),
        was_disabled=bool(before.get("disabled")),
        held=int(before.get("held") or 0),
        since=since,
        until=until,
        truncated=truncated,
        next_since=next_since,
    )


def _received(key: dict[str, str]) -> str:
    return key["sk"].split("#", 2)[1]


__all__ = ["ReplayAccepted", "ReplayRequest", "replay"]

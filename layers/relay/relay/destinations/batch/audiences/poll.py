"""Following a write's indexing tokens through ``GET /audiences/view`` until the audience is ready.

One read per poll message, through the project limiter; the next read is a delayed message (from
BATCH_INDEXING_POLL_FIRST_S, doubling up to BATCH_INDEXING_POLL_MAX_S; nothing sleeps). Tokens are
followed in call order; APPLIED (or REPLACED: a later replace superseded it) counts as indexed,
IN_PROGRESS / IN_PROCESS as not yet; a view answering 404 after a later write of the audience
made its calls (a remove) counts as SUPERSEDED: nothing is left to wait for. Every token indexed:
`applied`, with ``ready_at``. Not within
BATCH_INDEXING_GIVE_UP_S of the last call: `unconfirmed`. The chain's current read is the write's
``poll_seq``: a redelivered or duplicated poll does nothing, and moving on is a conditional write.
"""

from __future__ import annotations

import random
from typing import Any

from relay.core.backoff import jittered
from relay.core.failpoints import failpoint
from relay.core.outcomes import RateLimited
from relay.core.store.table import ConditionFailed
from relay.destinations.batch.audiences import store
from relay.destinations.batch.audiences.models import DONE_STATES, SUPERSEDED
from relay.destinations.batch.audiences.send import AudienceDeps, releases_at_indexing, wake_successor


def next_delay(attempt: int, deps: AudienceDeps) -> float:
    s = deps.settings
    return min(s.batch_indexing_poll_max_s, s.batch_indexing_poll_first_s * 2 ** max(0, attempt - 1))


def pending_call(item: dict[str, Any]) -> dict[str, Any] | None:
    """The first call whose token is not indexed yet."""
    states = item.get("call_states") or {}
    for call in item.get("calls") or []:
        if (states.get(str(call["n"])) or {}).get("state") not in DONE_STATES:
            return call
    return None


def superseded(item: dict[str, Any], deps: AudienceDeps) -> bool:
    """Whether a later write of the audience has made its calls (a remove, say): an audience that
    is gone then is that write's doing, not an indexing delay."""
    return int(store.sequence(deps.table, item["audience"]).get("released", 0)) > int(item["seq"])


def poll_once(execution_id: str, attempt: int, deps: AudienceDeps) -> str:
    from relay.destinations.batch.client import Accepted, Rejected

    item = store.get(deps.table, execution_id)
    if not item:
        return "no such execution"
    if item["status"] != "indexing":
        return f"nothing to follow: {item['status']}"
    if int(item.get("poll_seq") or 0) != attempt:
        return f"stale poll {attempt} (the chain is at {item.get('poll_seq')}): dropped"
    s = deps.settings
    call = pending_call(item)
    states: dict[str, Any] = dict(item.get("call_states") or {})
    state: str | None = None
    outcome: Any = None
    if call is not None:
        slot = deps.limiter.acquire_until_answered(s.batch_audience_max_inline_wait_s)
        if slot is None:
            deps.queue.poll(execution_id, attempt=attempt, delay_s=random.uniform(1, 2))
            return "no slot, polling later"
        outcome = deps.client.call(
            "GET",
            "/audiences/view",
            params={"name": item["audience"], "indexing_token": call["indexing_token"]},
        )
        deps.limiter.answered(slot, deps.clock())
        failpoint("batch.audience.poll.after_call")
        now = deps.clock()
        if isinstance(outcome, Accepted):
            state = str(outcome.body.get("indexing_state") or "") or None
        elif isinstance(outcome, Rejected) and outcome.status == 404 and superseded(item, deps):
            state = SUPERSEDED
        entry: dict[str, Any] = {"state": state or (states.get(str(call["n"])) or {}).get("state")}
        if state in DONE_STATES:
            entry["indexed_at"] = now
        states[str(call["n"])] = entry
    now = deps.clock()
    guard = dict(allowed_from=["indexing"], now=now, poll_seq=attempt)
    if pending_call({**item, "call_states": states}) is None:
        return ready(item, states, guard, deps)
    if now - float(item.get("calls_done_at") or now) >= s.batch_indexing_give_up_s:
        fields = {
            "call_states": states,
            "error_code": "indexing_timeout",
            "error_message": "Batch did not report the audience indexed within "
            f"{s.batch_indexing_give_up_s:g}s (BATCH_INDEXING_GIVE_UP_S)",
        }
        return end(item, "unconfirmed", fields, guard, deps)
    delay = 0.0 if state in DONE_STATES else next_delay(attempt, deps)
    fields: dict[str, Any] = {"call_states": states, "poll_seq": attempt + 1, "last_polled_at": now}
    if isinstance(outcome, RateLimited):
        delay = max(
            delay, outcome.retry_at - now, jittered(1, s.batch_retry_after_default_s, s.batch_retry_max_s)
        )
        fields["last_error"] = "429 from Batch on /audiences/view"
    elif outcome is not None and not isinstance(outcome, Accepted):
        fields["last_error"] = str(getattr(outcome, "message", outcome))[:500]
    try:
        store.transition(
            deps.table, execution_id, **guard, to="indexing", fields=fields, due=now + delay, logged=False
        )
    except ConditionFailed:
        return "another delivery of this poll moved on: dropped"
    failpoint("batch.audience.poll.after_advance")
    deps.queue.poll(execution_id, attempt=attempt + 1, delay_s=delay)
    return "indexing"


def ready(item: dict[str, Any], states: dict[str, Any], guard: dict[str, Any], deps: AudienceDeps) -> str:
    fields = {"call_states": states, "ready_at": deps.clock()}
    deps.emit("BatchAudienceWritesApplied", 1)
    return end(item, "applied", fields, guard, deps)


def end(
    item: dict[str, Any], to: str, fields: dict[str, Any], guard: dict[str, Any], deps: AudienceDeps
) -> str:
    """A terminal status; it releases the audience's next write here when writes wait for
    indexing (BATCH_AUDIENCE_WAIT_FOR_INDEXING), else that happened when the calls were made."""
    try:
        if releases_at_indexing(deps):
            store.transition(
                deps.table, item["execution_id"], **guard, to=to, fields=fields, remove=["last_error"]
            )
        else:
            store.transition_and_release(
                deps.table, item, **guard, to=to, fields=fields, remove=["last_error"]
            )
    except ConditionFailed:
        return "moved on elsewhere"
    failpoint("batch.audience.poll.after_terminal")
    if not releases_at_indexing(deps):
        wake_successor(item, deps)
    return to

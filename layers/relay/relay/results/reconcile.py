"""What the reconciler repairs on the results path (see ``functions/reconciler``).

A webhook event is stored (with its de-duplication mark) before it is queued, and stays in the
ledger's index until the deliver worker records it. One still there since ``stale_before`` was
never queued (the webhooks function crashed or timed out between the two, and the platform gave
up on its retries) or its message was lost: it is queued again. Safe to repeat: the deliver
worker records each event once, and only the message that recorded it forwards it. An event
queued ``MAX_REQUEUES`` times and still not recorded is dead-lettered (alarmed, re-drivable).
"""

from __future__ import annotations

from relay.core import wiring as core_wiring
from relay.core.clock import iso
from relay.core.failpoints import failpoint
from relay.executions.registry import Emit
from relay.results import store, wiring
from relay.results.messages import record_message
from relay.results.store import SOURCE

MAX_REQUEUES = 5
MAX_PER_RUN = 1_000  # the rest waits for the next run (the function has 50 s)


def reconcile(now: float, stale_before: float, emit: Emit) -> dict[str, int]:
    """Results left untouched since ``stale_before`` with nothing in flight: repairs by kind."""
    table, queue = core_wiring.table(), wiring.queue()
    found = list(store.unrecorded(table, SOURCE, iso(stale_before), limit=MAX_PER_RUN))
    if not found:
        return {}
    # Read again, consistently: recorded meanwhile is no repair.
    marks = [m for m in table.get_many(found) if m.get("gsi2pk") and not m.get("recorded_at")]
    again = [m for m in marks if int(m.get("requeues", 0)) < MAX_REQUEUES]
    give_up = [m for m in marks if int(m.get("requeues", 0)) >= MAX_REQUEUES]
    failed = set(queue.send_many([record_message(SOURCE, store.by_id_key(m)) for m in again]))
    failpoint("results.reconcile.after_queue")
    requeued = 0
    for index, mark in enumerate(again):
        if index not in failed:
            store.requeued(table, mark, now)
            requeued += 1
    for mark in give_up:
        queue.dead_letter(
            record_message(SOURCE, store.by_id_key(mark)),
            f"queued {MAX_REQUEUES} times by the reconciler and never recorded",
        )
        store.given_up(table, mark, now)
    return {"ResultsRequeued": requeued, "ResultsDeadLettered": len(give_up)}

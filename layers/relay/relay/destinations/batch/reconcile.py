"""What the reconciler repairs on the Batch profile path: a lane left without a wake-up.

The lane needs a wake-up while it has pending operations. Two records say one is on its way: the
lane's own (armed, with the time its next wake-up is due) and an accepted execution's outbox entry
(removed once the lane was armed and woken). Either one overdue means the wake-up was lost to a
crash between two side effects; a fresh wake-up is always safe (an idle dispatcher disarms).
"""

from __future__ import annotations

from aws_lambda_powertools import Logger

from relay.core.failpoints import failpoint
from relay.core.queue import Queue
from relay.core.store.table import Table
from relay.destinations.batch import store
from relay.destinations.batch.wakeups import wake

logger = Logger(child=True)


def reconcile(table: Table, queue: Queue, now: float, stale_before: float) -> dict[str, int]:
    items = store.overdue(table, stale_before)
    if not items:
        return {}
    lanes = {str(i["group_id"]) for i in items if i.get("group_id")}
    for lane in lanes:
        store.expect_wakeup(table, lane, now)  # not overdue again until this one is
    failpoint("batch.reconcile.before_wake")
    wake(queue)
    for item in items:
        if item.get("kind") == "execution":
            store.woken(table, str(item["execution_id"]))
    logger.warning(
        "woke the Batch dispatcher whose wake-up was lost",
        extra={"lanes": len(lanes), "executions": [i["execution_id"] for i in items if "execution_id" in i]},
    )
    return {"BatchWakeups": 1}

"""What the reconciler repairs on the Optimized.app path: groups left without a wake-up.

A group needs a wake-up while it has work. Two records say one is on its way: the group's own
(armed, with the time its last wake-up was due) and an accepted execution's outbox entry (removed
once its group was armed and woken). Either one overdue by ``RELAY_RECONCILE_AFTER_S`` means the
wake-up was lost to a crash between two side effects; waking the group again is always safe (a
dispatcher with nothing to do disarms it), so the repair is simply a fresh wake-up.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.failpoints import failpoint
from relay.core.store.table import Table
from relay.destinations.optimized import store
from relay.destinations.optimized.wakeups import Wakeups

logger = Logger(child=True)


def reconcile(table: Table, queue: Wakeups, now: float, stale_before: float) -> dict[str, int]:
    waiting: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for item in store.overdue_wakeups(table, stale_before):
        waiting[str(item["group_id"])].append(item)
    for group_id, items in waiting.items():
        store.expect_wakeup(table, group_id, now)  # not overdue again until this one is
        failpoint("reconcile.before_wake")
        queue.wake(group_id)
        for item in items:
            if "execution_id" in item:  # an execution's outbox entry (a group's has no id)
                store.woken(table, str(item["execution_id"]))
        logger.warning(
            "woke a group whose wake-up was lost",
            extra={
                "group_id": group_id,
                "executions": [i["execution_id"] for i in items if "execution_id" in i],
            },
        )
    return {"GroupWakeups": len(waiting)} if waiting else {}

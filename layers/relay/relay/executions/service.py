"""Reading, listing and cancelling executions of any destination, and listing scheduled work:
each execution item names its destination, and the registry does the rest."""

from __future__ import annotations

from typing import Any

from relay.core.paging import decode_positions, encode_positions
from relay.core.store import keys
from relay.core.store.table import Table
from relay.executions import registry, store
from relay.executions.models import ExecutionPage, ExecutionView, ScheduledItem
from relay.executions.registry import NotCancellable

__all__ = ["NotCancellable", "NotFound", "cancel", "get_execution", "list_executions", "list_scheduled"]


# Executions read for one page of a status-filtered listing, at most.
MAX_SCANNED_PER_PAGE = 200


class NotFound(Exception):
    pass


def _item(table: Table, execution_id: str) -> dict[str, Any]:
    item = store.get(table, execution_id)
    if not item:
        raise NotFound(execution_id)
    return item


def get_execution(table: Table, execution_id: str, *, with_chunks: bool = True) -> ExecutionView:
    item = _item(table, execution_id)
    return registry.get(item["destination"]).view(table, item, details=with_chunks)


def list_executions(
    table: Table,
    *,
    status: str | None,
    limit: int,
    next_token: str | None,
    since_iso: str | None = None,
    until_iso: str | None = None,
) -> ExecutionPage:
    start = decode_positions(
        next_token,
        partitions=keys.executions_partitions(),
        partition_key="gsi1pk",
        sort_keys=["gsi1sk", "pk", "sk"],
    )
    found: list[ExecutionView] = []
    # Status is derived, so it is filtered here. A page reads at most MAX_SCANNED_PER_PAGE items
    # (or `limit`, if more), however many executions there are: a rare status gives short pages,
    # with a next_token, rather than one request reading the whole table.
    budget = max(limit, MAX_SCANNED_PER_PAGE)
    while True:
        want = min(limit - len(found), budget)  # never read past what the page can hold
        items, start = store.list_page(
            table, limit=want, start=start, since_iso=since_iso, until_iso=until_iso
        )
        budget -= len(items)
        for item in items:
            view = registry.get(item["destination"]).view(table, item, details=False)
            if status is None or view.status == status:
                found.append(view)
        if len(found) >= limit or not start or budget <= 0:
            break
    return ExecutionPage(items=found, next_token=encode_positions(start) if start else None)


def cancel(table: Table, execution_id: str, now: float) -> ExecutionView:
    item = _item(table, execution_id)
    return registry.get(item["destination"]).cancel(table, item, now)


def list_scheduled(table: Table, from_ts: float, to_ts: float, *, limit: int = 500) -> list[ScheduledItem]:
    """Work with a run time in [from, to], of every destination, soonest first (an index query
    per day listed: the cost is the page's, not the table's)."""
    found: list[ScheduledItem] = []
    for item in store.with_run_time(table, from_ts, to_ts, limit=limit):
        entry = registry.get(item["destination"]).scheduled(item)
        if entry is not None:
            found.append(entry)
    return sorted(found, key=lambda s: s.run_at)

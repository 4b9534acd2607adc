"""Listing stored results: per execution, or those that matched none."""

from __future__ import annotations

from relay.core.paging import decode_token, encode_token
from relay.core.store import keys
from relay.core.store.table import Table
from relay.results import store
from relay.results.models import ResultPage, ResultView


def list_results(
    table: Table, *, execution_id: str | None, type_: str | None, limit: int, next_token: str | None
) -> ResultPage:
    partition = keys.execution_partition(execution_id) if execution_id else keys.RESULTS_UNMATCHED_PARTITION
    start = decode_token(next_token, partition={"pk": partition}, sort_keys=["sk"])
    items, start = store.page(table, partition, type_=type_, limit=limit, start=start)
    return ResultPage(
        items=[ResultView(**store.view_from(i)) for i in items],
        next_token=encode_token(start) if start else None,
    )

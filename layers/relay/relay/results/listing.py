"""Listing stored results: per execution, those that matched none, or those not mirrored."""

from __future__ import annotations

from relay.core.paging import decode_positions, decode_token, encode_positions, encode_token
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


def list_mirror_skipped(table: Table, *, type_: str | None, limit: int, next_token: str | None) -> ResultPage:
    """Results a destination that mirrors them could not mirror (their ``mirrors`` say why),
    oldest first. A type filter applies to the page read: pages may then be short."""
    start = decode_positions(
        next_token,
        partitions=keys.mirror_skipped_partitions(),
        partition_key="gsi3pk",
        sort_keys=["gsi3sk", "pk", "sk"],
    )
    items, start = store.mirror_skipped_page(table, limit=limit, start=start)
    views = [ResultView(**store.view_from(i)) for i in items]
    return ResultPage(
        items=[v for v in views if type_ is None or v.type == type_],
        next_token=encode_positions(start) if start else None,
    )

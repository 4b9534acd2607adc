"""Finding what caused a result: the links the destinations wrote when they sent (LinksTable)."""

from __future__ import annotations

from typing import Any

from relay.core.store import keys
from relay.core.store.table import Table


def find(
    table: Table, *, profile_uuid: str | None, external_id: str | None, batch_uuid: str | None
) -> dict[str, Any] | None:
    """The link of a result: by profile uuid, else external_id, else a batch of one execution."""
    wanted = []
    if profile_uuid:
        wanted.append(keys.profile_link(profile_uuid))
    if external_id:
        wanted.append(keys.external_link(external_id))
    if batch_uuid:
        wanted.append(keys.batch_link(batch_uuid))
    if not wanted:
        return None
    found = {item["pk"]: item for item in table.get_many(wanted, consistent=False)}
    for key in wanted:
        item = found.get(key["pk"])
        if item is None:
            continue
        if "execution_ids" in item:
            executions = item["execution_ids"]
            # A packed batch may hold several executions: without a profile it is ambiguous.
            return {"execution_id": executions[0], "batch_uuid": batch_uuid} if len(executions) == 1 else None
        return item
    return None

"""Links from upstream ids back to the execution, chunk and input profile that caused them.

Written when a batch was sent (profile uuid -> everything; external_id -> the same; batch uuid ->
its executions), read when a result arrives. One batch_put per sent batch keeps it cheap.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger

from relay.store.dispatch import ChunkResult
from relay.store.table import Table

logger = Logger(child=True)

SK = "LINK"


def profile_key(uuid: str) -> dict[str, str]:
    return {"pk": f"LINK#profile#{uuid}", "sk": SK}


def external_key(external_id: str) -> dict[str, str]:
    return {"pk": f"LINK#external#{external_id}", "sk": SK}


def batch_key(batch_uuid: str) -> dict[str, str]:
    return {"pk": f"LINK#batch#{batch_uuid}", "sk": SK}


def record_sent(
    table: Table, results: Sequence[ChunkResult], now: float, *, ttl_days: int = 90, profiles: bool = True
) -> None:
    """Link every profile of the sent chunks. Never raises: a result that finds no link is kept
    as unmatched, whereas an exception here would disturb a dispatch that already succeeded."""
    try:
        items = link_items(results, int(now + ttl_days * 86_400), profiles=profiles)
        table.batch_put(items)
    except Exception:
        logger.exception("could not record result links; results for these chunks will be unmatched")


def link_items(
    results: Sequence[ChunkResult], expires_at: int, *, profiles: bool = True
) -> list[dict[str, Any]]:
    items: dict[str, dict[str, Any]] = {}
    batches: dict[str, set[str]] = {}
    for result in results:
        if result.status != "sent":
            continue
        fields = result.fields
        batch_uuid, schedule_uuid = fields.get("batch_uuid"), fields.get("schedule_uuid")
        execution_id, seq = result.chunk.execution_id, result.chunk.seq
        if batch_uuid:
            batches.setdefault(batch_uuid, set()).add(execution_id)
        for profile in json.loads(fields.get("upstream_profiles_json") or "[]") if profiles else []:
            link = {
                "execution_id": execution_id,
                "chunk_seq": seq,
                "profile_index": profile.get("index"),
                "ref": profile.get("ref"),
                "profile_uuid": profile.get("uuid"),
                "external_id": profile.get("external_id"),
                "batch_uuid": batch_uuid,
                "schedule_uuid": schedule_uuid,
                "expires_at": expires_at,
            }
            if profile.get("uuid"):
                items[profile["uuid"]] = {**profile_key(profile["uuid"]), **link}
            if profile.get("external_id"):
                # The customer's id may recur across triggers: the latest send wins.
                items["ext:" + profile["external_id"]] = {**external_key(profile["external_id"]), **link}
    for batch_uuid, executions in batches.items():
        items["batch:" + batch_uuid] = {
            **batch_key(batch_uuid),
            "execution_ids": sorted(executions),
            "expires_at": expires_at,
        }
    return list(items.values())


def find(
    table: Table, *, profile_uuid: str | None, external_id: str | None, batch_uuid: str | None
) -> dict[str, Any] | None:
    """The link of a result: by profile uuid, else external_id, else a batch of one execution."""
    wanted = []
    if profile_uuid:
        wanted.append(profile_key(profile_uuid))
    if external_id:
        wanted.append(external_key(external_id))
    if batch_uuid:
        wanted.append(batch_key(batch_uuid))
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

"""Links from Optimized.app ids back to the execution, chunk and input profile that caused them.

Written when a batch was sent (profile uuid -> everything; external_id -> the same; batch uuid ->
its executions) into the LinksTable; the results path reads them (``relay.results.links``). One
batch_put per sent batch keeps it cheap.

A destination that mirrors results onto its own profiles may need some of the input profile's
attributes (e.g. Batch's custom id from ``attribute:<name>``): the registry names them, and each
link keeps their values. That is the cheapest place in DynamoDB I/O: the link is written anyway
and read anyway for every result, so the values cost a few bytes on both and no request; reading
the input profile when a result arrives would be one more read of its chunk (up to 50 profiles,
several read units) per result - and chunks may be gone before their last results arrive.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from aws_lambda_powertools import Logger

from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.optimized.store import ChunkResult
from relay.executions import registry

logger = Logger(child=True)


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
    kept = registry.kept_profile_attributes()
    for result in results:
        if result.status != "sent":
            continue
        fields = result.fields
        batch_uuid, schedule_uuid = fields.get("batch_uuid"), fields.get("schedule_uuid")
        execution_id, seq = result.chunk.execution_id, result.chunk.seq
        if batch_uuid:
            batches.setdefault(batch_uuid, set()).add(execution_id)
        inputs = {p.get("index"): p for p in result.chunk.profiles} if kept else {}
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
            if kept:
                link["attributes"] = kept_attributes(inputs.get(profile.get("index")), kept)
            if profile.get("uuid"):
                items[profile["uuid"]] = {**keys.profile_link(profile["uuid"]), **link}
            if profile.get("external_id"):
                # The customer's id may recur across triggers: the latest send wins.
                items["ext:" + profile["external_id"]] = {
                    **keys.external_link(profile["external_id"]),
                    **link,
                }
    for batch_uuid, executions in batches.items():
        items["batch:" + batch_uuid] = {
            **keys.batch_link(batch_uuid),
            "execution_ids": sorted(executions),
            "expires_at": expires_at,
        }
    return list(items.values())


def kept_attributes(profile: dict[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
    """The input profile's attributes named (those it has), as ``{name: value}``."""
    wanted = set(names)
    return {
        a["name"]: a.get("value")
        for a in (profile or {}).get("attributes") or []
        if isinstance(a, dict) and a.get("name") in wanted
    }

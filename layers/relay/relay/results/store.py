"""Results: de-duplication markers, result items with their execution counters, the 410 flag.

Layout: ``WEBHOOK#<source>#<event_id>/DEDUPE`` (TTL) marks an event seen; a result lives under
its execution (``EXEC#<id>/RESULT#<received>#<event_id>``) or, when it matched nothing, under
``RESULTS#UNMATCHED``; the raw payload is a JSON string attribute (no nested maps to index).
"""

from __future__ import annotations

import json
from typing import Any

from relay.core.store import codec, keys
from relay.core.store.table import ConditionFailed, Table, TransactionCancelled, update_operation
from relay.results.models import COUNTER_OF_TYPE

# The platform whose webhooks the results path takes in (the key of its de-duplication marks).
SOURCE = "optimized"


class ExecutionGone(Exception):
    """The linked execution no longer exists (expired): the result is kept as unmatched."""


def mark_seen(table: Table, source: str, event_id: str, now: float, ttl_s: int) -> bool:
    """True if the event is new (and now marked), False if it was seen within the TTL."""
    item = {**keys.webhook_seen(source, event_id), "received_at": now, "expires_at": int(now + ttl_s)}
    try:
        # An expired marker may linger until DynamoDB's TTL sweep: treat it as absent.
        table.client.put_item(
            TableName=table.name,
            Item=codec.dump(item),
            ConditionExpression="attribute_not_exists(pk) OR expires_at < :now",
            ExpressionAttributeValues=codec.values(now=int(now)),
        )
    except table.client.exceptions.ConditionalCheckFailedException:
        return False
    return True


def forget_seen(table: Table, source: str, event_id: str) -> None:
    """Undo mark_seen when the event could not be queued, so the platform's retry is accepted."""
    table.client.delete_item(TableName=table.name, Key=codec.dump(keys.webhook_seen(source, event_id)))


def record(table: Table, item: dict[str, Any], now: float) -> bool:
    """Store a result and count it on its execution, atomically. False if already stored (an SQS
    redelivery); ExecutionGone if the execution it links to has expired."""
    execution_id = item.get("execution_id")
    put = {"Put": {"Item": codec.dump(item), "ConditionExpression": "attribute_not_exists(pk)"}}
    if not execution_id:
        try:
            table.put(item, condition="attribute_not_exists(pk)")
        except ConditionFailed:
            return False
        return True
    counter = "results_" + COUNTER_OF_TYPE.get(item["type"], "unknown")
    count = update_operation(
        keys.execution(execution_id),
        "ADD #counter :one SET results_updated_at = :now",
        values=codec.values(one=1, now=now),
        names={"#counter": counter},
        condition="attribute_exists(pk)",
    )
    try:
        table.transact([put, count])
    except TransactionCancelled as cancelled:
        failed = cancelled.failed_at()
        if 0 in failed:
            return False
        if 1 in failed:
            raise ExecutionGone(execution_id) from cancelled
        raise
    return True


def page(
    table: Table, partition: str, *, type_: str | None, limit: int, start: dict[str, Any] | None
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Results of one partition, oldest first; a type filter may need several reads to fill a page."""
    found: list[dict[str, Any]] = []
    while True:
        kwargs: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": codec.values(pk=partition, prefix=keys.RESULT_PREFIX),
            "Limit": limit - len(found),
        }
        if type_:
            kwargs["FilterExpression"] = "#type = :type"
            kwargs["ExpressionAttributeNames"] = {"#type": "type"}
            kwargs["ExpressionAttributeValues"] |= codec.values(type=type_)
        if start:
            kwargs["ExclusiveStartKey"] = start
        items, start = table.query(**kwargs)
        found += items
        if len(found) >= limit or not start:
            return found, start


def item_from(view: dict[str, Any], expires_at: int) -> dict[str, Any]:
    """A result view (dict) -> its table item; the raw payload travels as a JSON string."""
    stored = {k: v for k, v in view.items() if k != "raw"}
    stored["raw_json"] = json.dumps(view.get("raw"), separators=(",", ":"), default=str)
    stored["expires_at"] = expires_at
    return {**keys.result(view.get("execution_id"), view["received_at"], view["event_id"]), **stored}


def view_from(item: dict[str, Any]) -> dict[str, Any]:
    view = {k: v for k, v in item.items() if k not in ("pk", "sk", "raw_json", "expires_at")}
    view["raw"] = json.loads(item.get("raw_json") or "null")
    return view


# --- Forwarding switched off by a 410 from the customer's endpoint ------------------------------


def forwarding_disabled(table: Table, url: str) -> bool:
    item = table.get(keys.forwarding_state(url), consistent=False)
    return bool(item and item.get("disabled"))


def disable_forwarding(table: Table, url: str, now: float, reason: str) -> None:
    table.put({**keys.forwarding_state(url), "disabled": True, "disabled_at": now, "reason": reason})

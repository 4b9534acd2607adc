"""Optimove executions, de-duplication keys, context schemas and per-brand limiter buckets.

An Optimove execution is ONE item (``EXEC#id`` / ``META``, like every execution, so the shared
list and get work): its ``status`` moves only by conditional writes, each appending a timestamped
entry to ``transitions``. Large caller data (the context) is a JSON string attribute.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from relay.core.store import codec, keys
from relay.core.store.table import Table, TransactionCancelled
from relay.destinations.optimove import NAME


class Duplicate(Exception):
    """The de-duplication key is taken: ``existing`` is the execution that holds it."""

    def __init__(self, existing_execution_id: str) -> None:
        super().__init__(existing_execution_id)
        self.existing_execution_id = existing_execution_id


class AlreadyExists(Exception):
    def __init__(self, existing: dict[str, Any]) -> None:
        super().__init__(existing.get("execution_id"))
        self.existing = existing


# --- Executions -----------------------------------------------------------------------------------


def create(
    table: Table, execution: dict[str, Any], *, dedupe_hash: str | None, dedupe_expires_at: int, now: float
) -> None:
    """Write a new execution, and claim its de-duplication key in the same transaction.

    Raises Duplicate when the key is held (and not expired) by another execution, AlreadyExists
    when this execution id exists (an Idempotency-Key retry)."""
    operations = [{"Put": {"Item": codec.dump(execution), "ConditionExpression": "attribute_not_exists(pk)"}}]
    if dedupe_hash:
        operations.append(
            {
                "Put": {
                    "Item": codec.dump(
                        {
                            **keys.dedupe(NAME, dedupe_hash),
                            "execution_id": execution["execution_id"],
                            "created_at": now,
                            "expires_at": dedupe_expires_at,
                        }
                    ),
                    # TTL deletion lags by up to days: an expired key is free even if still there.
                    "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                    "ExpressionAttributeValues": codec.values(now=int(now)),
                }
            }
        )
    try:
        table.transact(operations)
    except TransactionCancelled as cancelled:
        failed = cancelled.failed_at()
        if 0 in failed:
            raise AlreadyExists(get(table, execution["execution_id"]) or {}) from cancelled
        if 1 in failed and dedupe_hash:
            held = table.get(keys.dedupe(NAME, dedupe_hash)) or {}
            raise Duplicate(str(held.get("execution_id", ""))) from cancelled
        raise


def get(table: Table, execution_id: str) -> dict[str, Any] | None:
    return table.get(keys.execution(execution_id))


def transition(
    table: Table,
    execution_id: str,
    *,
    allowed_from: Iterable[str],
    to: str,
    now: float,
    fields: dict[str, Any] | None = None,
    remove: Iterable[str] = (),
    add: dict[str, int] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Move the execution to ``to`` iff its status is one of ``allowed_from``; returns the item
    as written. Raises ConditionFailed when it is elsewhere (another worker got there first)."""
    allowed = list(allowed_from)
    entry: dict[str, Any] = {"status": to, "at": now}
    if note:
        entry["note"] = note[:500]
    set_fields = {"status": to, "updated_at": now, **(fields or {})}
    names = {f"#f{i}": name for i, name in enumerate(set_fields)}
    vals: dict[str, Any] = {f"v{i}": v for i, v in enumerate(set_fields.values())}
    vals |= {f"a{i}": s for i, s in enumerate(allowed)}
    vals |= {"entry": [entry], "empty": []}
    expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(set_fields)))
    expression += ", transitions = list_append(if_not_exists(transitions, :empty), :entry)"
    if add:
        vals |= {f"n{i}": v for i, v in enumerate(add.values())}
        names |= {f"#n{i}": name for i, name in enumerate(add)}
        expression += " ADD " + ", ".join(f"#n{i} :n{i}" for i in range(len(add)))
    removed = list(remove)
    if removed:
        names |= {f"#r{i}": name for i, name in enumerate(removed)}
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
    names["#st"] = "status"
    return table.update(
        keys.execution(execution_id),
        expression,
        values=codec.values(**vals),
        names=names,
        condition="#st IN (" + ", ".join(f":a{i}" for i in range(len(allowed))) + ")",
        returns="ALL_NEW",
    )


def note_poll(table: Table, execution_id: str, now: float, upstream_status: str, polls: int) -> None:
    """A poll that saw no change of status: remember when, without a transition entry."""
    table.update(
        keys.execution(execution_id),
        "SET last_polled_at = :now, upstream_status = :u, polls = :p",
        values=codec.values(now=now, u=upstream_status, p=polls),
    )


# --- Context schemas ------------------------------------------------------------------------------


def put_schema(table: Table, generator_id: str, schema: dict[str, Any], now: float, caller: str) -> None:
    import json

    table.put(
        {
            **keys.generator_schema(generator_id),
            "event_generator_id": generator_id,
            "schema_json": json.dumps(schema, separators=(",", ":"), sort_keys=True),
            "updated_at": now,
            "updated_by": caller,
        }
    )


def get_schema(table: Table, generator_id: str) -> dict[str, Any] | None:
    return table.get(keys.generator_schema(generator_id), consistent=False)


def due(table: Table, until_iso: str, *, limit: int = 500) -> list[dict[str, Any]]:
    """Scheduled Optimove triggers with send_at <= until (oldest first), as gsi2 shows them."""
    items, _ = table.query(
        IndexName=keys.WAITING_INDEX,
        KeyConditionExpression="gsi2pk = :p AND gsi2sk <= :u",
        ExpressionAttributeValues=codec.values(p=keys.scheduled_partition(NAME), u=until_iso + "~"),
        Limit=limit,
    )
    return items

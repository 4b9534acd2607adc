"""Optimove executions, de-duplication keys, context schemas and per-brand limiter buckets.

An Optimove execution is ONE item (``EXEC#id`` / ``META``, like every execution, so the shared
list and get work): its ``status`` moves only by conditional writes, each appending a timestamped
entry to ``transitions``. Large caller data (the context) is a JSON string attribute.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from relay.core.clock import iso
from relay.core.store import codec, keys
from relay.core.store.table import ConditionFailed, Table, TransactionCancelled, update_operation
from relay.destinations.optimove import NAME
from relay.destinations.optimove.models import TERMINAL

# The gsi2 entry of a run under way and when its next step is due (see ``due_keys``).
DUE_ATTRIBUTES = ("gsi2pk", "gsi2sk", "due_at")


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


def due_keys(execution_id: str, at: float) -> dict[str, Any]:
    """A run under way is on gsi2 (``DUE#optimove``) by when its next step is due: its message's
    delivery (queued), its call's end (sending), its next status read (accepted, processing). The
    reconciler takes what is overdue by RELAY_RECONCILE_AFTER_S: nothing in flight moved it."""
    return {
        "gsi2pk": keys.due_partition(NAME, execution_id),
        "gsi2sk": keys.due_sort(iso(at), execution_id),
        "due_at": at,
    }


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
    due: float | None = None,
    poll_seq: int | None = None,
) -> dict[str, Any]:
    """Move the execution to ``to`` iff its status is one of ``allowed_from`` (and, with
    ``poll_seq``, iff that poll is the chain's current one); returns the item as written. Raises
    ConditionFailed when it is elsewhere (another worker got there first).

    ``due``: when the run's next step is due (its gsi2 entry, see :func:`due_keys`); a terminal
    status leaves gsi2."""
    update = transition_operation(
        execution_id,
        allowed_from=allowed_from,
        to=to,
        now=now,
        fields=fields,
        remove=remove,
        add=add,
        note=note,
        due=due,
        poll_seq=poll_seq,
    )["Update"]
    return table.update(
        keys.execution(execution_id),
        update["UpdateExpression"],
        values=update["ExpressionAttributeValues"],
        names=update["ExpressionAttributeNames"],
        condition=update["ConditionExpression"],
        returns="ALL_NEW",
    )


def transition_operation(
    execution_id: str,
    *,
    allowed_from: Iterable[str],
    to: str,
    now: float,
    fields: dict[str, Any] | None = None,
    remove: Iterable[str] = (),
    add: dict[str, int] | None = None,
    note: str | None = None,
    due: float | None = None,
    poll_seq: int | None = None,
) -> dict[str, Any]:
    """The conditional update of :func:`transition`, as one operation of a transaction."""
    allowed = list(allowed_from)
    entry: dict[str, Any] = {"status": to, "at": now}
    if note:
        entry["note"] = note[:500]
    set_fields = {"status": to, "updated_at": now, **(fields or {})}
    if due is not None:
        set_fields |= due_keys(execution_id, due)
    if to in TERMINAL:
        remove = [*remove, *(name for name in DUE_ATTRIBUTES if name not in remove)]
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
    condition = "#st IN (" + ", ".join(f":a{i}" for i in range(len(allowed))) + ")"
    if poll_seq is not None:
        condition += " AND (poll_seq = :seq OR attribute_not_exists(poll_seq))"
        vals["seq"] = poll_seq
    return update_operation(
        keys.execution(execution_id),
        expression,
        values=codec.values(**vals),
        names=names,
        condition=condition,
    )


def cancel_releasing_dedupe(
    table: Table,
    execution_id: str,
    *,
    allowed_from: Iterable[str],
    now: float,
    dedupe_hash: str | None,
    fields: dict[str, Any],
) -> dict[str, Any]:
    """``-> cancelled`` and, in the same transaction, the run's de-duplication key given up (iff
    this run still holds it), so the same event can be triggered again: a cancelled run never ran.
    Raises ConditionFailed when the run is no longer in ``allowed_from``."""
    allowed = list(allowed_from)
    cancel = transition_operation(
        execution_id,
        allowed_from=allowed,
        to="cancelled",
        now=now,
        fields=fields,
        remove=["gsi2pk", "gsi2sk"],
    )
    operations = [cancel]
    if dedupe_hash:
        operations.append(
            {
                "Delete": {
                    "Key": codec.dump(keys.dedupe(NAME, dedupe_hash)),
                    # Another run's key (this one's expired and was taken since) is not ours to free.
                    "ConditionExpression": "attribute_not_exists(pk) OR execution_id = :id",
                    "ExpressionAttributeValues": codec.values(id=execution_id),
                }
            }
        )
    try:
        table.transact(operations)
    except TransactionCancelled as cancelled:
        if 0 in cancelled.failed_at():
            raise ConditionFailed(execution_id) from cancelled
        if 1 not in cancelled.failed_at():
            raise
        transition(
            table,
            execution_id,
            allowed_from=allowed,
            to="cancelled",
            now=now,
            fields=fields,
            remove=["gsi2pk", "gsi2sk"],
        )
    return get(table, execution_id) or {}


def advance_poll(
    table: Table,
    execution_id: str,
    *,
    attempt: int,
    now: float,
    upstream_status: str | None,
    next_at: float,
) -> bool:
    """A status read that changed nothing: the chain moves on to poll ``attempt + 1`` at
    ``next_at`` - iff poll ``attempt`` is its current one and the run is still followed. False when
    another delivery of this poll got there first: then this one must not queue a next poll (a
    redelivered or duplicated poll never starts a second chain against the brand's limit)."""
    expression = (
        "SET last_polled_at = :now, polls = :p, poll_seq = :next, gsi2pk = :dp, gsi2sk = :ds, due_at = :due"
    )
    status_value = {}
    if upstream_status is not None:  # what Optimove said (a failed read says nothing)
        expression += ", upstream_status = :u"
        status_value = {"u": upstream_status}
    try:
        table.update(
            keys.execution(execution_id),
            expression,
            values=codec.values(
                **status_value,
                now=now,
                p=attempt,
                next=attempt + 1,
                seq=attempt,
                a0="accepted",
                a1="processing",
                dp=keys.due_partition(NAME, execution_id),
                ds=keys.due_sort(iso(next_at), execution_id),
                due=next_at,
            ),
            names={"#st": "status"},
            condition="#st IN (:a0, :a1) AND (poll_seq = :seq OR attribute_not_exists(poll_seq))",
        )
    except ConditionFailed:
        return False
    return True


def touch_due(table: Table, execution_id: str, status: str, at: float, *, repair: bool = False) -> bool:
    """Move a run's next step to ``at`` iff it is still ``status`` (a run that waits for a slot
    longer than the reconciler's patience; ``repair``: the reconciler queued its step again, counted
    on the run as ``repairs``)."""
    expression = "SET gsi2pk = :dp, gsi2sk = :ds, due_at = :due"
    counted = {}
    if repair:
        expression += " ADD repairs :one"
        counted = {"one": 1}
    try:
        table.update(
            keys.execution(execution_id),
            expression,
            values=codec.values(
                **counted,
                st=status,
                dp=keys.due_partition(NAME, execution_id),
                ds=keys.due_sort(iso(at), execution_id),
                due=at,
            ),
            names={"#st": "status"},
            condition="#st = :st",
        )
    except ConditionFailed:
        return False
    return True


def leave_due(table: Table, execution_id: str) -> None:
    """A finished run still on gsi2 (written before a terminal transition cleared it): off it."""
    table.update(
        keys.execution(execution_id),
        "REMOVE " + ", ".join(DUE_ATTRIBUTES),
        values=codec.values(**{f"t{i}": s for i, s in enumerate(sorted(TERMINAL))}),
        names={"#st": "status"},
        condition="#st IN (" + ", ".join(f":t{i}" for i in range(len(TERMINAL))) + ")",
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


def overdue(table: Table, before: float, *, limit: int = 500) -> list[dict[str, Any]]:
    """Runs under way whose next step was due before ``before`` (oldest first), as gsi2 shows them
    (every shard read, then merged)."""
    items: list[dict[str, Any]] = []
    for partition in keys.due_partitions(NAME):
        found, _ = table.query(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :p AND gsi2sk < :b",
            ExpressionAttributeValues=codec.values(p=partition, b=iso(before)),
            Limit=limit,
        )
        items += found
    return sorted(items, key=lambda item: str(item["gsi2sk"]))[:limit]

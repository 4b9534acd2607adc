"""Audience writes in DynamoDB: each write an execution (``EXEC#id`` / ``META``) with its ids in
parts, and each audience a sequence that orders its writes.

The sequence item (``AUDIENCE#name`` / ``SEQUENCE``) holds ``accepted`` (writes accepted so far:
a write takes the next number in the same transaction that stores it, so there is never a hole)
and ``released`` (the last write whose calls are all made: the write after it may go). A write
leaves its calls (to ``indexing`` or a terminal status) and releases its successor in ONE
transaction, so a crash never leaves a finished write holding the audience. ``WRITE#seq`` items
name each write's execution, so a releasing write finds the next one.

Every status change is a conditional write, appended to ``transitions``; a write under way is on
gsi2 by when its next step is due (the reconciler finds what nothing in flight moves).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from relay.core.clock import iso
from relay.core.store import codec, keys
from relay.core.store.table import ConditionFailed, Table, TransactionCancelled, update_operation
from relay.destinations.batch.audiences import split
from relay.destinations.batch.audiences.models import TERMINAL

# The gsi2 partition of audience writes under way (apart from the destination's other work).
DUE = "batch-audiences"
DUE_ATTRIBUTES = ("gsi2pk", "gsi2sk", "due_at")
# Accepts racing for one audience's next number: tried this many times before giving up (503).
SEQUENCE_RETRIES = 8


class AlreadyExists(Exception):
    def __init__(self, existing: dict[str, Any]) -> None:
        super().__init__(existing.get("execution_id"))
        self.existing = existing


class SequenceBusy(Exception):
    """Too many writes to one audience accepted at the same instant: the caller tries again."""


def get(table: Table, execution_id: str) -> dict[str, Any] | None:
    return table.get(keys.execution(execution_id))


def sequence(table: Table, name: str) -> dict[str, Any]:
    return table.get(keys.audience_sequence(name)) or {"accepted": 0, "released": 0}


def due_keys(execution_id: str, at: float) -> dict[str, Any]:
    return {
        "gsi2pk": keys.due_partition(DUE, execution_id),
        "gsi2sk": keys.due_sort(iso(at), execution_id),
        "due_at": at,
    }


def put_parts(table: Table, execution_id: str, cut: list[tuple[int, str]], expires_at: int) -> list[int]:
    """The write's ids (cut by :func:`split.parts`), stored before the write itself (a crash in
    between leaves parts no execution points at, which expire); returns each part's first index."""
    # One put a part: a few for the largest body the API takes (RELAY_MAX_BODY_BYTES).
    for n, (start, text) in enumerate(cut):
        part = {"start": start, "entries_json": text, "expires_at": expires_at}
        table.put({**keys.execution_part(execution_id, n), **part})
    return [start for start, _ in cut]


def create(table: Table, execution: dict[str, Any]) -> int:
    """Store the write with the audience's next number (``seq``, set on ``execution``); returns it.
    AlreadyExists when the execution id is taken (an Idempotency-Key retry)."""
    name, execution_id = execution["audience"], execution["execution_id"]
    for _ in range(SEQUENCE_RETRIES):
        accepted = int(sequence(table, name).get("accepted", 0))
        seq = accepted + 1
        execution["seq"] = seq
        counter = update_operation(
            keys.audience_sequence(name),
            "SET accepted = :seq, released = if_not_exists(released, :zero), audience = :name",
            values=codec.values(seq=seq, zero=0, name=name, **({"prev": accepted} if accepted else {})),
            condition="accepted = :prev" if accepted else "attribute_not_exists(accepted)",
        )
        operations = [
            counter,
            {"Put": {"Item": codec.dump(execution), "ConditionExpression": "attribute_not_exists(pk)"}},
            {
                "Put": {
                    "Item": codec.dump({**keys.audience_write(name, seq), "execution_id": execution_id}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
        try:
            table.transact(operations)
            return seq
        except TransactionCancelled as cancelled:
            failed = cancelled.failed_at()
            if 1 in failed:
                raise AlreadyExists(get(table, execution_id) or {}) from cancelled
            if not failed or 0 in failed or 2 in failed:
                continue  # another write took this number first: take the next one
            raise
    raise SequenceBusy(name)


def transition_operation(
    execution_id: str,
    *,
    allowed_from: Iterable[str],
    to: str,
    now: float,
    fields: dict[str, Any] | None = None,
    remove: Iterable[str] = (),
    add: dict[str, int] | None = None,
    append: dict[str, list[Any]] | None = None,
    note: str | None = None,
    due: float | None = None,
    calls_made: int | None = None,
    poll_seq: int | None = None,
    logged: bool = True,
) -> dict[str, Any]:
    """The conditional update moving a write to ``to`` iff its status is one of ``allowed_from``
    (and, when given, iff ``calls_made`` / ``poll_seq`` are what the caller read). ``logged``:
    appended to ``transitions`` (a poll that changes nothing is not)."""
    allowed = list(allowed_from)
    entry: dict[str, Any] = {"status": to, "at": now}
    if note:
        entry["note"] = note[:500]
    set_fields = {"status": to, "updated_at": now, **(fields or {})}
    if due is not None and to not in TERMINAL:
        set_fields |= due_keys(execution_id, due)
    removed = list(remove)
    if to in TERMINAL:
        removed += [name for name in DUE_ATTRIBUTES if name not in removed]
    names = {f"#f{i}": name for i, name in enumerate(set_fields)}
    vals: dict[str, Any] = {f"v{i}": v for i, v in enumerate(set_fields.values())}
    vals |= {f"a{i}": s for i, s in enumerate(allowed)}
    if logged or append:
        vals["empty"] = []
    expression = "SET " + ", ".join(f"#f{i} = :v{i}" for i in range(len(set_fields)))
    if logged:
        vals["entry"] = [entry]
        expression += ", transitions = list_append(if_not_exists(transitions, :empty), :entry)"
    for i, (name, items) in enumerate((append or {}).items()):
        names[f"#l{i}"] = name
        vals[f"l{i}"] = items
        expression += f", #l{i} = list_append(if_not_exists(#l{i}, :empty), :l{i})"
    if add:
        names |= {f"#n{i}": name for i, name in enumerate(add)}
        vals |= {f"n{i}": v for i, v in enumerate(add.values())}
        expression += " ADD " + ", ".join(f"#n{i} :n{i}" for i in range(len(add)))
    if removed:
        names |= {f"#r{i}": name for i, name in enumerate(removed)}
        expression += " REMOVE " + ", ".join(f"#r{i}" for i in range(len(removed)))
    names["#st"] = "status"
    condition = "#st IN (" + ", ".join(f":a{i}" for i in range(len(allowed))) + ")"
    if calls_made is not None:
        condition += " AND calls_made = :made"
        vals["made"] = calls_made
    if poll_seq is not None:
        condition += " AND poll_seq = :seq"
        vals["seq"] = poll_seq
    return update_operation(
        keys.execution(execution_id),
        expression,
        values=codec.values(**vals),
        names=names,
        condition=condition,
    )


def transition(table: Table, execution_id: str, **change: Any) -> dict[str, Any]:
    """Apply :func:`transition_operation`; the item as written. ConditionFailed: it moved on."""
    update = transition_operation(execution_id, **change)["Update"]
    return table.update(
        keys.execution(execution_id),
        update["UpdateExpression"],
        values=update["ExpressionAttributeValues"],
        names=update["ExpressionAttributeNames"],
        condition=update["ConditionExpression"],
        returns="ALL_NEW",
    )


def transition_and_release(table: Table, item: dict[str, Any], **change: Any) -> None:
    """Move the write on (:func:`transition_operation`) and release the audience's next write, in
    one transaction. ConditionFailed: the write moved on elsewhere."""
    seq = int(item["seq"])
    release = update_operation(
        keys.audience_sequence(item["audience"]),
        "SET released = :seq",
        values=codec.values(seq=seq, prev=seq - 1),
        condition="released = :prev",
    )
    try:
        table.transact([transition_operation(item["execution_id"], **change), release])
    except TransactionCancelled as cancelled:
        raise ConditionFailed(item["execution_id"]) from cancelled


def successor(table: Table, item: dict[str, Any]) -> str | None:
    """The execution id of the write accepted after this one, if any."""
    found = table.get(keys.audience_write(item["audience"], int(item["seq"]) + 1))
    return str(found["execution_id"]) if found else None


def entries_of_call(table: Table, item: dict[str, Any], n: int, per_call: int) -> list[dict[str, Any]]:
    """The ids of call ``n``, read from the parts that hold them."""
    start, end = split.call_range(n, int(item.get("ids_total", 0)), per_call)
    wanted = split.parts_for([int(s) for s in item.get("part_starts", [])], start, end)
    if not wanted:
        return []
    loaded = table.get_many([keys.execution_part(item["execution_id"], p) for p in wanted])
    return split.slice_parts([(int(p["start"]), json.loads(p["entries_json"])) for p in loaded], start, end)


def touch_due(table: Table, execution_id: str, status: str, at: float, *, repair: bool = False) -> bool:
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
                dp=keys.due_partition(DUE, execution_id),
                ds=keys.due_sort(iso(at), execution_id),
                due=at,
            ),
            names={"#st": "status"},
            condition="#st = :st",
        )
    except ConditionFailed:
        return False
    return True


def overdue(table: Table, before: float, *, limit: int = 500) -> list[dict[str, Any]]:
    """Writes under way whose next step was due before ``before``, oldest first."""
    items: list[dict[str, Any]] = []
    for partition in keys.due_partitions(DUE):
        found, _ = table.query(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :p AND gsi2sk < :b",
            ExpressionAttributeValues=codec.values(p=partition, b=iso(before)),
            Limit=limit,
        )
        items += found
    return sorted(items, key=lambda item: str(item["gsi2sk"]))[:limit]

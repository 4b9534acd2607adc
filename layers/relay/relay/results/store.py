"""Results: the event ledger (de-duplication, and the event itself until it is recorded), result
items with their execution counters, the 410 flag.

Layout: ``WEBHOOK#<source>#<event_id>/DEDUPE`` (TTL) marks an event seen. It is written with the
normalised event (``event_json``) and stays in gsi2 (``RESULTS#UNRECORDED#<source>#<shard>``) until
the deliver worker has recorded the result - in the same transaction that stores the result and
counts it, conditional on the mark not being recorded yet, so an event is counted once whatever
SQS, the platform or the reconciler deliver twice. A result lives under its execution
(``EXEC#<id>/RESULT#<received>#<event_id>``) or, when it matched nothing, under
``RESULTS#UNMATCHED``; the raw payload is a JSON string attribute (no nested maps to index).
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from relay.core.clock import iso
from relay.core.store import codec, keys
from relay.core.store.table import (
    CONFLICT_BACKOFF_S,
    ConditionFailed,
    Table,
    TransactionCancelled,
    update_operation,
)
from relay.results.models import COUNTER_OF_TYPE

# The platform whose webhooks the results path takes in (the key of its de-duplication marks).
SOURCE = "optimized"

# Marks are written in transactions of this many conditional puts (DynamoDB's ceiling is 100),
# several transactions side by side: a body of thousands of events is a few dozen calls.
MARKS_PER_TRANSACTION = 100
MARK_WORKERS = 8
MAX_MARK_ROUNDS = 5


class ExecutionGone(Exception):
    """The linked execution no longer exists (expired): the result is kept as unmatched."""


@dataclass
class Marked:
    """What marking the events of one request found."""

    fresh: list[dict[str, Any]] = field(default_factory=list)  # new: stored now
    # Stored by an earlier request and not recorded yet (it crashed, or it is still on its way):
    # (event, received_iso) to queue again - the deliver worker records each event once.
    waiting: list[tuple[dict[str, Any], str]] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)  # recorded already: nothing to do


def mark_item(source: str, event: dict[str, Any], now: float, ttl_s: int) -> dict[str, Any]:
    """The ledger item of a new event: the mark, the event, and its place among the unrecorded."""
    event_id, received = event["event_id"], iso(now)
    return {
        **keys.webhook_seen(source, event_id),
        "received_at": now,
        "received_iso": received,
        "expires_at": int(now + ttl_s),
        "event_json": json.dumps(event, separators=(",", ":")),
        "gsi2pk": keys.unrecorded_partition(source, keys.unrecorded_shard(event_id)),
        "gsi2sk": keys.unrecorded_sort(received, event_id),
    }


_NEW_OR_EXPIRED = "attribute_not_exists(pk) OR expires_at < :now"


def mark_events(
    table: Table, source: str, events: Sequence[dict[str, Any]], now: float, ttl_s: int
) -> Marked:
    """Store each event with its de-duplication mark (conditional: new, or its mark expired).
    ``events`` are normalised event dicts with distinct ``event_id``s, in the body's order."""
    marked = Marked()
    todo = [mark_item(source, e, now, ttl_s) for e in events]
    by_id = {e["event_id"]: e for e in events}
    for round_ in range(MAX_MARK_ROUNDS):
        if not todo:
            return marked
        if round_:
            _pause(round_ - 1)  # some conflicted with another write in progress
        groups = [todo[i : i + MARKS_PER_TRANSACTION] for i in range(0, len(todo), MARKS_PER_TRANSACTION)]
        if len(groups) == 1:
            answers = [_mark_group(table, groups[0], now)]
        else:
            with ThreadPoolExecutor(min(MARK_WORKERS, len(groups))) as pool:
                answers = list(pool.map(lambda g: _mark_group(table, g, now), groups))
        todo = []
        for group, answer in zip(groups, answers, strict=True):
            for item, (outcome, old) in zip(group, answer, strict=True):
                event_id = by_id_key(item)
                if outcome == "written":
                    marked.fresh.append(by_id[event_id])
                elif outcome == "exists":
                    _classify_existing(marked, event_id, old)
                else:  # rolled back with the rest of its transaction, or a conflict: try again
                    todo.append(item)
    if todo:
        raise RuntimeError(f"{len(todo)} events could not be marked after {MAX_MARK_ROUNDS} rounds")
    return marked


def by_id_key(item: dict[str, Any]) -> str:
    return item["pk"].split("#", 2)[2]


def _classify_existing(marked: Marked, event_id: str, old: dict[str, Any] | None) -> None:
    if old and old.get("event_json") and not (old.get("recorded_at") or old.get("gave_up_at")):
        received = old.get("received_iso") or iso(float(old["received_at"]))
        marked.waiting.append((json.loads(old["event_json"]), received))
    else:  # recorded, given up on (dead-lettered), or marked by a release that kept no event
        marked.duplicates.append(event_id)


def _mark_group(table: Table, items: list[dict[str, Any]], now: float) -> list[tuple[str, Any]]:
    """[(written | exists | retry, old item)] for each item, in order."""
    values = codec.values(now=int(now))
    if len(items) == 1:  # one put, not a transaction (half the write cost)
        try:
            table.client.put_item(
                TableName=table.name,
                Item=codec.dump(items[0]),
                ConditionExpression=_NEW_OR_EXPIRED,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
                raise
            return [("exists", _old(table, items[0], exc.response.get("Item")))]
        return [("written", None)]
    operations = [
        {
            "Put": {
                "TableName": table.name,
                "Item": codec.dump(item),
                "ConditionExpression": _NEW_OR_EXPIRED,
                "ExpressionAttributeValues": values,
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }
        for item in items
    ]
    try:
        table.client.transact_write_items(TransactItems=operations)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "TransactionCanceledException":
            raise
        reasons = exc.response.get("CancellationReasons") or []
        if len(reasons) != len(items):
            return [("retry", None)] * len(items)
        out: list[tuple[str, Any]] = []
        for item, reason in zip(items, reasons, strict=True):
            if reason.get("Code") == "ConditionalCheckFailed":
                out.append(("exists", _old(table, item, reason.get("Item"))))
            else:
                out.append(("retry", None))
        return out
    return [("written", None)] * len(items)


def _old(table: Table, item: dict[str, Any], returned: dict[str, Any] | None) -> dict[str, Any] | None:
    if returned:
        return codec.load(returned)
    return table.get({"pk": item["pk"], "sk": item["sk"]})


def get_mark(table: Table, source: str, event_id: str) -> dict[str, Any] | None:
    return table.get(keys.webhook_seen(source, event_id))


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


@dataclass(frozen=True)
class Recorded:
    """The outcome of recording a result: ``new`` if this call stored and counted it; otherwise
    the ledger says who did (``recorded_by``: the token of the message that recorded it) and
    where the stored result is."""

    new: bool
    recorded_by: str | None = None
    result_key: dict[str, str] | None = None


def record(
    table: Table,
    item: dict[str, Any],
    now: float,
    *,
    source: str = SOURCE,
    token: str | None = None,
    ttl_s: int = 7 * 86_400,
) -> Recorded:
    """Store a result and count it on its execution, atomically, and only once per event id: the
    event's ledger item is switched to recorded in the same transaction, conditional on it not
    being recorded yet. ExecutionGone if the execution it links to has expired."""
    event_id = item["event_id"]
    result_key = {"pk": item["pk"], "sk": item["sk"]}
    ledger = _recorded(source, event_id, result_key, token, now, ttl_s)
    ledger["Update"]["ConditionExpression"] = "attribute_not_exists(recorded_at)"
    ledger["Update"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    put = {"Put": {"Item": codec.dump(item), "ConditionExpression": "attribute_not_exists(pk)"}}
    operations = [ledger, put]
    execution_id = item.get("execution_id")
    if execution_id:
        counter = "results_" + COUNTER_OF_TYPE.get(item["type"], "unknown")
        # A result that a destination could not mirror is counted in the same update (no extra I/O).
        skipped = ", results_mirror_skipped :one" if mirror_skipped(item) else ""
        operations.append(
            update_operation(
                keys.execution(execution_id),
                f"ADD #counter :one{skipped} SET results_updated_at = :now",
                values=codec.values(one=1, now=now),
                names={"#counter": counter},
                condition="attribute_exists(pk)",
            )
        )
    try:
        table.transact(operations)
    except TransactionCancelled as cancelled:
        codes = cancelled.reasons
        if codes[:1] == ["ConditionalCheckFailed"]:  # recorded before
            old = (cancelled.items or [None])[0] or get_mark(table, source, event_id) or {}
            key = {"pk": old["result_pk"], "sk": old["result_sk"]} if old.get("result_pk") else None
            return Recorded(False, old.get("recorded_by") or None, key)
        if codes[1:2] == ["ConditionalCheckFailed"]:
            # Stored by a release whose ledger kept no state: the ledger says so now.
            table.transact([_recorded(source, event_id, result_key, token, now, ttl_s)])
            return Recorded(False, token, result_key)
        if codes[2:3] == ["ConditionalCheckFailed"]:
            raise ExecutionGone(execution_id) from None
        raise
    return Recorded(True, token, result_key)


def _recorded(
    source: str, event_id: str, result_key: dict[str, str], token: str | None, now: float, ttl_s: int
) -> dict[str, Any]:
    """The ledger item's switch to recorded: by which message, where the result is; the event
    itself and the index entry are no longer needed."""
    return update_operation(
        keys.webhook_seen(source, event_id),
        "SET recorded_at = :now, recorded_by = :token, result_pk = :rpk, result_sk = :rsk,"
        " expires_at = if_not_exists(expires_at, :expires) REMOVE event_json, gsi2pk, gsi2sk",
        values=codec.values(
            now=now,
            token=token or "",
            rpk=result_key["pk"],
            rsk=result_key["sk"],
            expires=int(now + ttl_s),
        ),
    )


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, CONFLICT_BACKOFF_S * 2**attempt))


def stored(table: Table, key: dict[str, str]) -> dict[str, Any] | None:
    """A stored result's view, by its key."""
    item = table.get(key)
    return view_from(item) if item else None


# --- What the reconciler finds: stored, never recorded -------------------------------------------


def unrecorded(table: Table, source: str, before_iso: str, *, limit: int) -> Iterator[dict[str, str]]:
    """Keys of ledger items left unrecorded since before ``before_iso``, oldest first per shard."""
    found = 0
    for shard in range(keys.UNRECORDED_SHARDS):
        for item in table.query_all(
            IndexName=keys.WAITING_INDEX,
            KeyConditionExpression="gsi2pk = :pk AND gsi2sk < :before",
            ExpressionAttributeValues=codec.values(
                pk=keys.unrecorded_partition(source, shard), before=before_iso
            ),
        ):
            yield {"pk": item["pk"], "sk": item["sk"]}
            found += 1
            if found >= limit:
                return


def requeued(table: Table, mark: dict[str, Any], now: float) -> None:
    """After the reconciler queued an unrecorded event again: count it and move the event to the
    back of the line, so it is stale again only after another reconcile period."""
    with contextlib.suppress(ConditionFailed):  # recorded meanwhile
        table.update(
            {"pk": mark["pk"], "sk": mark["sk"]},
            "SET requeues = if_not_exists(requeues, :zero) + :one, gsi2sk = :sort",
            values=codec.values(zero=0, one=1, sort=keys.unrecorded_sort(iso(now), by_id_key(mark))),
            condition="attribute_exists(gsi2pk)",
        )


def given_up(table: Table, mark: dict[str, Any], now: float) -> None:
    """The event was queued again and again and never recorded (it is dead-lettered now): out of
    the index; the event stays on its ledger item for ``relay dlq redrive``."""
    with contextlib.suppress(ConditionFailed):
        table.update(
            {"pk": mark["pk"], "sk": mark["sk"]},
            "SET gave_up_at = :now REMOVE gsi2pk, gsi2sk",
            values=codec.values(now=now),
            condition="attribute_exists(gsi2pk)",
        )


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
    index = keys.received_index(view["received_at"], str(view.get("type")), view["event_id"])
    if mirror_skipped(view):  # listed by GET /v1/results?mirror=skipped
        index |= keys.mirror_skipped_index(view["received_at"], view["event_id"])
    return {**keys.result(view.get("execution_id"), view["received_at"], view["event_id"]), **stored, **index}


def mirror_skipped(view: dict[str, Any]) -> bool:
    """A destination that mirrors results could not mirror this one (no profile id, ...)."""
    return any(m.get("status") == "skipped" for m in view.get("mirrors") or [])


def view_from(item: dict[str, Any]) -> dict[str, Any]:
    hidden = ("pk", "sk", "raw_json", "expires_at", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk")
    view = {k: v for k, v in item.items() if k not in hidden}
    view["raw"] = json.loads(item.get("raw_json") or "null")
    return view


# --- Forwarding state of the customer's endpoint: failing since, disabled, held, replayed ---------


def forwarding_state(table: Table, url: str, *, consistent: bool = False) -> dict[str, Any]:
    return table.get(keys.forwarding_state(url), consistent=consistent) or {}


def forwarding_disabled(table: Table, url: str) -> bool:
    return bool(forwarding_state(table, url).get("disabled"))


def disable_forwarding(table: Table, url: str, now: float, reason: str) -> None:
    table.update(
        keys.forwarding_state(url),
        "SET disabled = :true, disabled_at = :now, reason = :reason",
        values=codec.values(true=True, now=now, reason=reason),
    )


def endpoint_failing(table: Table, url: str, now: float) -> None:
    """A forward failed: the endpoint has been failing since now, or since earlier."""
    table.update(
        keys.forwarding_state(url),
        "SET failing_since = if_not_exists(failing_since, :now), last_failure_at = :now",
        values=codec.values(now=now),
    )


def endpoint_recovered(table: Table, url: str) -> None:
    """A forward succeeded after failures: the endpoint is no longer failing."""
    table.update(keys.forwarding_state(url), "REMOVE failing_since")


def held(table: Table, url: str, now: float) -> None:
    """A result stored but not forwarded while forwarding is disabled (a replay forwards it)."""
    table.update(
        keys.forwarding_state(url),
        "SET held_since = if_not_exists(held_since, :now), last_held_at = :now ADD held :one",
        values=codec.values(now=now, one=1),
    )


def enable_forwarding(table: Table, url: str, now: float, replay: dict[str, Any]) -> dict[str, Any]:
    """Forwarding on again (a replay): the state before it is returned."""
    return table.update(
        keys.forwarding_state(url),
        "SET enabled_at = :now, last_replay = :replay REMOVE disabled, failing_since, held, held_since",
        values=codec.values(now=now, replay=replay),
        returns="ALL_OLD",
    )


def received_between(
    table: Table, since_iso: str, until_iso: str, *, type_: str | None = None, limit: int
) -> Iterator[tuple[dict[str, str], str, str]]:
    """(result key, type, event_id) of results received in [since, until), day by day (each
    day's shards in turn, so the order is by day, not exact), at most ``limit``."""
    found = 0
    day = datetime.fromisoformat(since_iso.replace("Z", "+00:00")).date()
    last = datetime.fromisoformat(until_iso.replace("Z", "+00:00")).date()
    while day <= last:
        for shard in range(keys.RECEIVED_SHARDS):
            for item in table.query_all(
                IndexName=keys.WAITING_INDEX,
                KeyConditionExpression="gsi2pk = :pk AND gsi2sk BETWEEN :since AND :until",
                ExpressionAttributeValues=codec.values(
                    pk=keys.received_partition(day.isoformat(), shard), since=since_iso, until=until_iso
                ),
            ):
                _, result_type, event_id = item["gsi2sk"].split("#", 2)
                if item["gsi2sk"] >= until_iso or (type_ and result_type != type_):
                    continue
                yield {"pk": item["pk"], "sk": item["sk"]}, result_type, event_id
                found += 1
                if found >= limit:
                    return
        day += timedelta(days=1)


# --- Results a destination could not mirror (gsi3, sparse, keys only) -----------------------------

Positions = dict[str, dict[str, Any] | None]


def mirror_skipped_page(
    table: Table, *, limit: int, start: Positions | None
) -> tuple[list[dict[str, Any]], Positions | None]:
    """Up to ``limit`` results not mirrored, oldest first, merged from every partition of the
    listing, and where each partition stands after them (None: all read). Each partition gives at
    most ``limit`` keys a page; the page's items are then read in one BatchGetItem."""
    positions: Positions = start if start is not None else dict.fromkeys(keys.mirror_skipped_partitions())
    read: dict[str, tuple[list[dict[str, Any]], bool]] = {}
    for partition, position in positions.items():
        kwargs: dict[str, Any] = {
            "IndexName": keys.MIRROR_SKIPPED_INDEX,
            "KeyConditionExpression": "gsi3pk = :p",
            "ExpressionAttributeValues": codec.values(p=partition),
            "Limit": limit,
        }
        if position:
            kwargs["ExclusiveStartKey"] = position
        found, last = table.query(**kwargs)
        read[partition] = (found, last is not None)
    oldest = sorted(
        ((item, partition) for partition, (found, _) in read.items() for item in found),
        key=lambda pair: str(pair[0]["gsi3sk"]),
    )[:limit]
    taken = {partition: item for item, partition in oldest}  # the last one taken from each
    after: Positions = {}
    for partition, (found, more) in read.items():
        if partition in taken:
            if more or taken[partition] is not found[-1]:
                after[partition] = codec.dump(
                    {k: taken[partition][k] for k in ("pk", "sk", "gsi3pk", "gsi3sk")}
                )
        elif found or more:
            after[partition] = positions[partition]  # nothing of it on this page: it stays put
    items = {
        (i["pk"], i["sk"]): i for i in table.get_many([{"pk": k["pk"], "sk": k["sk"]} for k, _ in oldest])
    }
    # An item gone between the index read and this one (expired) is left out.
    return [items[(k["pk"], k["sk"])] for k, _ in oldest if (k["pk"], k["sk"]) in items], (after or None)

"""A thin wrapper over the low-level DynamoDB client for the relay table."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from relay.core.store import codec

MAX_TRANSACTION_ITEMS = 100
MAX_BATCH_GET_KEYS = 100


class ConditionFailed(Exception):
    """A conditional write found the item in another state."""


@dataclass
class TransactionCancelled(Exception):
    """Raised with the cancellation reason code of every item, in order, and the item each
    operation found where it asked for it (``ReturnValuesOnConditionCheckFailure``; else None)."""

    reasons: list[str]
    items: list[dict[str, Any] | None] = field(default_factory=list)

    def __str__(self) -> str:
        return f"transaction cancelled: {self.reasons}"

    def failed_at(self) -> list[int]:
        return [i for i, r in enumerate(self.reasons) if r == "ConditionalCheckFailed"]

    def conflicted_only(self) -> bool:
        """Cancelled because another write was in progress on an item, no condition failed: the
        same transaction may simply be tried again (DynamoDB's advice)."""
        return "TransactionConflict" in self.reasons and not self.failed_at()


# A transaction that conflicted with another write is tried this many more times, after
# full-jitter pauses of up to 50 ms, 100 ms, 200 ms, 400 ms.
CONFLICT_RETRIES = 4
CONFLICT_BACKOFF_S = 0.05


class Table:
    sleep: Callable[[float], None] = staticmethod(time.sleep)

    def __init__(self, client: Any, name: str) -> None:
        self.client = client
        self.name = name

    def get(self, key: dict[str, str], *, consistent: bool = True) -> dict[str, Any] | None:
        answer = self.client.get_item(TableName=self.name, Key=codec.dump(key), ConsistentRead=consistent)
        return codec.load(answer["Item"]) if "Item" in answer else None

    def get_many(self, keys: Sequence[dict[str, str]], *, consistent: bool = True) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        for start in range(0, len(keys), MAX_BATCH_GET_KEYS):
            page = [codec.dump(k) for k in keys[start : start + MAX_BATCH_GET_KEYS]]
            request = {self.name: {"Keys": page, "ConsistentRead": consistent}}
            while request:
                answer = self.client.batch_get_item(RequestItems=request)
                found += [codec.load(i) for i in answer["Responses"].get(self.name, [])]
                request = answer.get("UnprocessedKeys") or {}
        return found

    def put(self, item: dict[str, Any], *, condition: str | None = None) -> None:
        kwargs: dict[str, Any] = {"TableName": self.name, "Item": codec.dump(item)}
        if condition:
            kwargs["ConditionExpression"] = condition
        try:
            self.client.put_item(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConditionFailed(str(item.get("pk"))) from exc
            raise

    def update(
        self,
        key: dict[str, str],
        expression: str,
        *,
        values: dict[str, Any] | None = None,
        names: dict[str, str] | None = None,
        condition: str | None = None,
        returns: str = "NONE",
    ) -> dict[str, Any]:
        update = update_operation(key, expression, values=values, names=names, condition=condition)["Update"]
        try:
            answer = self.client.update_item(TableName=self.name, ReturnValues=returns, **update)
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConditionFailed(str(key)) from exc
            raise
        return codec.load(answer.get("Attributes", {}))

    def query(self, **kwargs: Any) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
        answer = self.client.query(TableName=self.name, **kwargs)
        return [codec.load(i) for i in answer.get("Items", [])], answer.get("LastEvaluatedKey")

    def query_all(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        start: dict[str, Any] | None = None
        while True:
            if start:
                kwargs["ExclusiveStartKey"] = start
            items, start = self.query(**kwargs)
            yield from items
            if not start:
                return

    def count(self, **kwargs: Any) -> int:
        """How many items a query matches (``Select=COUNT``, every page; no item is read out)."""
        total, start = 0, None
        while True:
            extra = {"ExclusiveStartKey": start} if start else {}
            answer = self.client.query(TableName=self.name, Select="COUNT", **kwargs, **extra)
            total += int(answer.get("Count", 0))
            start = answer.get("LastEvaluatedKey")
            if not start:
                return total

    def transact(self, operations: list[dict[str, Any]]) -> None:
        """TransactWriteItems; operations name no table (it is added here). A cancellation by a
        conflict alone is retried; any other raises TransactionCancelled with every reason."""
        if len(operations) > MAX_TRANSACTION_ITEMS:
            raise ValueError(f"{len(operations)} operations exceed one transaction")
        for op in operations:
            next(iter(op.values()))["TableName"] = self.name
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self.client.transact_write_items(TransactItems=operations)
                return
            except ClientError as exc:
                if exc.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                found = exc.response.get("CancellationReasons") or []
                reasons = [r.get("Code", "None") for r in found]
                if not reasons:
                    reasons = _reasons_from_message(exc.response["Error"].get("Message", ""))
                items = [codec.load(r["Item"]) if r.get("Item") else None for r in found]
                cancelled = TransactionCancelled(reasons, items)
                if not cancelled.conflicted_only() or attempt == CONFLICT_RETRIES:
                    raise cancelled from exc
                self.sleep(random.uniform(0, CONFLICT_BACKOFF_S * 2**attempt))

    def batch_put(self, items: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            request = {
                self.name: [{"PutRequest": {"Item": codec.dump(i)}} for i in items[start : start + 25]]
            }
            while request:
                answer = self.client.batch_write_item(RequestItems=request)
                request = answer.get("UnprocessedItems") or {}


def _reasons_from_message(message: str) -> list[str]:
    # "Transaction cancelled, please refer cancellation reasons for specific reasons
    #  [None, ConditionalCheckFailed]" - some emulators only say it in the message.
    if "[" not in message:
        return []
    inner = message[message.rfind("[") + 1 : message.rfind("]")]
    return [part.strip() for part in inner.split(",")]


def update_operation(
    key: dict[str, str],
    expression: str,
    *,
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
    condition: str | None = None,
) -> dict[str, Any]:
    """One Update item of a transaction (:meth:`Table.transact` adds the table name)."""
    update: dict[str, Any] = {"Key": codec.dump(key), "UpdateExpression": expression}
    if condition:
        update["ConditionExpression"] = condition
    if names:
        update["ExpressionAttributeNames"] = names
    if values:
        update["ExpressionAttributeValues"] = values
    return {"Update": update}

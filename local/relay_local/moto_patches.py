"""Two of moto's costs that grow with the data, made flat. Dev tooling only: the relay never
imports this.

* DynamoDB transactions: moto backs up every table a transaction touches with ``copy.deepcopy`` -
  once per item of the transaction - so a 20-item transaction on a table of a few thousand chunks
  takes seconds and the local stack crawls. Here the backup is replaced by a snapshot of just the
  items the transaction touches, restored if the transaction fails; moto's own code still
  evaluates every condition and applies every write.
* SQS receives: for every message it looks at, moto checks the retention period by building ALL
  the queue's attributes, three of which count every message - a receive on a queue holding
  5,000 messages costs 5,000 x 15,000 steps. Here the check reads the one attribute it needs, and
  the counts (still built on every send) read the clock once per count, not once per message.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

_applied = False
_lock = threading.Lock()
_originals: list[tuple[Any, str, Any]] = []  # (owner, attribute, value before apply())


def _patch(owner: Any, name: str, value: Any) -> None:
    _originals.append((owner, name, owner.__dict__[name]))
    setattr(owner, name, value)


class _CopyWithoutTableBackups:
    """Stands in for the ``copy`` module inside moto.dynamodb.models: tables are not copied."""

    def __init__(self, table_type: type) -> None:
        self._table_type = table_type

    def deepcopy(self, value: Any, memo: dict | None = None) -> Any:
        if isinstance(value, self._table_type):
            return value
        return copy.deepcopy(value, memo)

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)


def apply() -> None:
    global _applied
    with _lock:
        if _applied:
            return
        from moto.dynamodb import models
        from moto.dynamodb.models.dynamo_type import DynamoType
        from moto.dynamodb.models.table import Table

        _patch(models, "copy", _CopyWithoutTableBackups(Table))
        original = models.DynamoDBBackend.transact_write_items

        def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
            snapshot = []
            for entry in transact_items:
                _, op = next(iter(entry.items()))
                table = self.tables.get(op.get("TableName"))
                if table is None:
                    continue
                attrs = op.get("Item") or op.get("Key") or {}
                if table.hash_key_attr not in attrs:
                    continue
                hash_value = DynamoType(attrs[table.hash_key_attr])
                range_value = (
                    DynamoType(attrs[table.range_key_attr])
                    if table.range_key_attr and table.range_key_attr in attrs
                    else None
                )
                if table.range_key_attr and range_value is None:
                    continue
                before = table.get_item(hash_value, range_value)
                snapshot.append((table, hash_value, range_value, copy.deepcopy(before)))
            try:
                original(self, transact_items)
            except Exception:
                for table, hash_value, range_value, before in reversed(snapshot):
                    if before is None:
                        table.delete_item(hash_value, range_value)
                    elif range_value is not None:
                        table.items[hash_value][range_value] = before
                    else:
                        table.items[hash_value] = before
                raise

        _patch(models.DynamoDBBackend, "transact_write_items", transact_write_items)
        _read_retention_period_directly()
        _count_messages_with_one_clock_read()
        _applied = True


def revert() -> None:
    """Put moto back as it was (tests compare moto with and without the patches)."""
    global _applied
    with _lock:
        while _originals:
            owner, name, value = _originals.pop()
            setattr(owner, name, value)
        _applied = False


def applied() -> bool:
    return _applied


def _read_retention_period_directly() -> None:
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return retention_period + message.sent_timestamp / 1000 > unix_time()

    _patch(
        SQSBackend, "is_message_valid_based_on_retention_period", is_message_valid_based_on_retention_period
    )


def _count_messages_with_one_clock_read() -> None:
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Queue

    # Same tests as moto's Message.visible / Message.delayed, with the time read once.
    def messages(self: Any) -> list[Any]:
        now = unix_time_millis()
        return [m for m in self._messages if now > m.visible_at and not now < m.delayed_until]

    def delayed(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if now < m.delayed_until)

    def not_visible(self: Any) -> int:
        now = unix_time_millis()
        return sum(1 for m in self._messages if not now > m.visible_at)

    _patch(Queue, "messages", property(messages))
    _patch(Queue, "approximate_number_of_messages_delayed", property(delayed))
    _patch(Queue, "approximate_number_of_messages_not_visible", property(not_visible))

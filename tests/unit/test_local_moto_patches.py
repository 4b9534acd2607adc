"""The local stack's moto patches: still needed (moto as it is does work that grows with the data)
and still right (moto with them answers exactly as moto without them).

Costs are counted, not timed: how many whole tables a transaction deep-copies, how many message
clock checks one receive makes.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.models.table import Table
from moto.sqs.models import Message, sqs_backends
from relay_local import moto_patches


@contextmanager
def moto(patched: bool) -> Iterator[None]:
    """In-process moto, with or without the local stack's patches (as they were afterwards)."""
    was = moto_patches.applied()
    moto_patches.apply() if patched else moto_patches.revert()
    try:
        with mock_aws():
            yield
    finally:
        moto_patches.apply() if was else moto_patches.revert()


both = pytest.mark.parametrize("patched", [False, True], ids=["moto", "patched"])


# -- DynamoDB transactions ----------------------------------------------------------------------------


def _table(rows: int = 0) -> Any:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    ddb.create_table(
        TableName="t",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for n in range(rows):
        ddb.put_item(TableName="t", Item={"pk": {"S": f"row-{n}"}, "v": {"N": "1"}})
    return ddb


def _whole_table_copies(call: Callable[[], Any]) -> int:
    copies = 0
    deepcopy = copy.deepcopy

    def counting(value: Any, memo: Any = None) -> Any:
        nonlocal copies
        copies += isinstance(value, Table)
        return deepcopy(value, memo)

    with mock.patch("copy.deepcopy", counting):
        call()
    return copies


@both
def test_a_transaction_copies_the_whole_table_per_item_unless_patched(patched: bool) -> None:
    with moto(patched):
        ddb = _table(rows=50)
        puts = [{"Put": {"TableName": "t", "Item": {"pk": {"S": f"new-{n}"}}}} for n in range(20)]
        copies = _whole_table_copies(lambda: ddb.transact_write_items(TransactItems=puts))
        assert ddb.scan(TableName="t", Select="COUNT")["Count"] == 70
    # moto backs up all 50+ rows once per item of the transaction; patched, only the 20 items.
    assert copies == (0 if patched else 20)


def _items(ddb: Any) -> dict[str, str]:
    return {i["pk"]["S"]: i["v"]["N"] for i in ddb.scan(TableName="t", ConsistentRead=True)["Items"]}


def _update(pk: str, value: str, condition: str | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": "t",
        "Key": {"pk": {"S": pk}},
        "UpdateExpression": "SET v = :v",
        "ExpressionAttributeValues": {":v": {"N": value}},
    }
    if condition:
        update["ConditionExpression"] = condition
        update["ExpressionAttributeValues"][":want"] = {"N": "5"}
    return {"Update": update}


@both
def test_a_cancelled_transaction_leaves_every_item_as_it_was(patched: bool) -> None:
    with moto(patched):
        ddb = _table()
        for pk in ("a", "b", "d"):
            ddb.put_item(TableName="t", Item={"pk": {"S": pk}, "v": {"N": "1"}})
        writes = [
            _update("a", "2"),
            {"Put": {"TableName": "t", "Item": {"pk": {"S": "c"}, "v": {"N": "2"}}}},
            {"Delete": {"TableName": "t", "Key": {"pk": {"S": "d"}}}},
        ]
        with pytest.raises(ddb.exceptions.TransactionCanceledException) as cancelled:
            ddb.transact_write_items(TransactItems=[*writes, _update("b", "2", condition="v = :want")])
        reasons = [r["Code"] for r in cancelled.value.response["CancellationReasons"]]
        assert reasons == ["None", "None", "None", "ConditionalCheckFailed"]
        assert _items(ddb) == {"a": "1", "b": "1", "d": "1"}  # the first three undone

        ddb.transact_write_items(TransactItems=[*writes, _update("b", "2")])
        assert _items(ddb) == {"a": "2", "b": "2", "c": "2"}


# -- SQS receives -------------------------------------------------------------------------------------


def _clock_checks(call: Callable[[], Any]) -> int:
    """How often moto asked a message whether it is visible or delayed (each reads the clock)."""
    checks = 0
    visible, delayed = Message.visible.fget, Message.delayed.fget  # type: ignore[attr-defined]

    def counted(read: Any) -> property:
        def get(self: Any) -> Any:
            nonlocal checks
            checks += 1
            return read(self)

        return property(get)

    with (
        mock.patch.object(Message, "visible", counted(visible)),
        mock.patch.object(Message, "delayed", counted(delayed)),
    ):
        call()
    return checks


@both
def test_a_receive_checks_every_message_per_message_received_unless_patched(patched: bool) -> None:
    with moto(patched):
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="deep")["QueueUrl"]
        for start in range(0, 500, 10):
            entries = [{"Id": str(n), "MessageBody": f"m{start + n}"} for n in range(10)]
            sqs.send_message_batch(QueueUrl=url, Entries=entries)
        received: list[Any] = []
        checks = _clock_checks(
            lambda: received.extend(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"])
        )
        assert len(received) == 10
    if patched:
        assert checks <= 2 * 10  # one or two per message received, none per message in the queue
    else:
        assert checks >= 10 * 500  # the whole queue, again for each message received


def _receive_one(age_s: float) -> list[str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    name = f"q{int(age_s)}"
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    [message] = sqs_backends["123456789012"]["us-east-1"].queues[name]._messages
    message.sent_timestamp -= int(age_s * 1000)
    return [m["Body"] for m in sqs.receive_message(QueueUrl=url).get("Messages", [])]


@both
def test_receive_still_honours_the_retention_period(patched: bool) -> None:
    with moto(patched):
        assert _receive_one(age_s=59) == ["hello"]
        assert _receive_one(age_s=61) == []  # past the queue's 60 s retention


@both
def test_queue_counts_are_unchanged(patched: bool) -> None:
    with moto(patched):
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="counts")["QueueUrl"]
        sqs.send_message(QueueUrl=url, MessageBody="now")
        sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=60)
        sqs.send_message(QueueUrl=url, MessageBody="taken")
        sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesDelayed",
            "ApproximateNumberOfMessagesNotVisible",
        ]
        counts = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    assert counts == dict(zip(names, ["1", "1", "1"], strict=True))

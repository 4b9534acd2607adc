"""The local stack's moto patches keep moto's behaviour while cutting its costs."""

from __future__ import annotations

import boto3
from moto import mock_aws
from moto.sqs.models import sqs_backends
from relay_local import moto_patches


def _receive_one(age_s: float) -> list[str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    name = f"q{int(age_s)}"
    url = sqs.create_queue(QueueName=name, Attributes={"MessageRetentionPeriod": "60"})["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="hello")
    [message] = sqs_backends["123456789012"]["us-east-1"].queues[name]._messages
    message.sent_timestamp -= int(age_s * 1000)
    return [m["Body"] for m in sqs.receive_message(QueueUrl=url).get("Messages", [])]


@mock_aws
def test_receive_still_honours_the_retention_period() -> None:
    moto_patches.apply()
    assert _receive_one(age_s=59) == ["hello"]
    assert _receive_one(age_s=61) == []  # past the queue's 60 s retention


@mock_aws
def test_queue_counts_are_unchanged() -> None:
    moto_patches.apply()
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

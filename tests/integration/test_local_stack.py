"""The local stack's own machinery, on a throwaway template with dummy functions.

moto in server mode, real boto3 clients, real HTTP over loopback; no fixed sleeps (deadlines).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from conftest import process_alive
from relay_local import aws
from relay_local.gateway import build_http_event, to_http_response
from relay_local.lambdas import InstanceCrashed, InvocationError, InvocationTimeout, LocalFunction
from relay_local.stack import LocalStack
from relay_local.template import Resolver, load_template, loads

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

TEMPLATE = """\
AWSTemplateFormatVersion: 2010-09-09
Transform: AWS::Serverless-2016-10-31
Parameters:
  LogLevel:
    Type: String
    Default: INFO
Globals:
  Function:
    Runtime: python3.13
    Handler: app.lambda_handler
    Timeout: 5
    MemorySize: 256
    Environment:
      Variables:
        TABLE: !Ref Table
        WORK_QUEUE_URL: !GetAtt WorkQueue.QueueUrl
        FROM_PARAMETER: !Ref LogLevel
        REGION_SUB: !Sub "${AWS::Region}-${Table}"
Resources:
  Table:
    Type: AWS::DynamoDB::Table
    Properties:
      BillingMode: PAY_PER_REQUEST
      AttributeDefinitions:
        - {AttributeName: pk, AttributeType: S}
        - {AttributeName: gsi1pk, AttributeType: S}
      KeySchema:
        - {AttributeName: pk, KeyType: HASH}
      GlobalSecondaryIndexes:
        - IndexName: gsi1
          KeySchema:
            - {AttributeName: gsi1pk, KeyType: HASH}
          Projection: {ProjectionType: KEYS_ONLY}
      TimeToLiveSpecification:
        AttributeName: expires_at
        Enabled: true
  WorkQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt WorkDeadLetterQueue.Arn
        maxReceiveCount: 2
  WorkDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties:
      MessageRetentionPeriod: 1209600
  OrderedQueue:
    Type: AWS::SQS::Queue
    Properties:
      FifoQueue: true
      ContentBasedDeduplication: true
      VisibilityTimeout: 5
  SlowQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 2
  HttpApi:
    Type: AWS::Serverless::HttpApi
  EchoFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: echo/
      Environment:
        Variables:
          ECHO_ONLY: "yes"
      Events:
        GetItem:
          Type: HttpApi
          Properties: {ApiId: !Ref HttpApi, Method: GET, Path: "/items/{id}"}
        PostItem:
          Type: HttpApi
          Properties: {ApiId: !Ref HttpApi, Method: POST, Path: "/items/{id}"}
        Special:
          Type: HttpApi
          Properties: {ApiId: !Ref HttpApi, Method: GET, Path: /items/special}
        Anything:
          Type: HttpApi
          Properties: {ApiId: !Ref HttpApi, Method: ANY, Path: "/files/{proxy+}"}
  WorkerFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: worker/
      Timeout: 10
      Events:
        Work:
          Type: SQS
          Properties:
            Queue: !GetAtt WorkQueue.Arn
            BatchSize: 5
            FunctionResponseTypes: [ReportBatchItemFailures]
        Ordered:
          Type: SQS
          Properties:
            Queue: !GetAtt OrderedQueue.Arn
            BatchSize: 1
  SlowFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: slow/
      Timeout: 30
      Events:
        Slow:
          Type: SQS
          Properties:
            Queue: !GetAtt SlowQueue.Arn
            BatchSize: 1
  NapFunction:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: slow/
      Timeout: 1
      ReservedConcurrentExecutions: 2
"""

ECHO_APP = """
import base64
import json
import os
import time
import uuid
from pathlib import Path


def _meet(folder, parties):
    # Wait (20 s at most) until `parties` invocations have arrived here: they run side by side.
    folder = Path(folder)
    (folder / uuid.uuid4().hex).touch()
    deadline = time.monotonic() + 20
    while len(list(folder.iterdir())) < parties and time.monotonic() < deadline:
        time.sleep(0.02)


def lambda_handler(event, context):
    path = event["rawPath"]
    query = event.get("queryStringParameters") or {}
    if "meet" in query:
        _meet(query["meet"], int(query["parties"]))
    if path == "/items/boom":
        raise RuntimeError("boom")
    if path == "/items/plain":
        return {"plain": True}
    if path == "/files/raw.bin":
        return {"statusCode": 201, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(b"\\x00\\xffraw").decode(), "isBase64Encoded": True}
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json", "x-echo": "1"},
        "cookies": ["session=abc; Path=/"],
        "body": json.dumps({
            "pid": os.getpid(),
            "event": event,
            "env": {k: os.environ.get(k) for k in (
                "TABLE", "WORK_QUEUE_URL", "FROM_PARAMETER", "REGION_SUB", "ECHO_ONLY", "AWS_ENDPOINT_URL")},
            "context": {
                "function_name": context.function_name,
                "request_id": context.aws_request_id,
                "remaining_ms": context.get_remaining_time_in_millis(),
                "memory": context.memory_limit_in_mb,
                "arn": context.invoked_function_arn,
            },
        }),
    }
"""

TABLE_HELPER = """
import os

import boto3

_table = None


def table():
    global _table
    if _table is None:
        _table = boto3.resource("dynamodb").Table(os.environ["TABLE"])
    return _table
"""

WORKER_APP = (
    TABLE_HELPER
    + """
import json


def lambda_handler(event, context):
    failures = []
    for record in event["Records"]:
        body = record["body"]
        if body == "boom":
            raise RuntimeError("boom")
        if body == "fail":
            failures.append({"itemIdentifier": record["messageId"]})
            continue
        table().put_item(Item={"pk": body, "record": json.dumps(record)})
    return {"batchItemFailures": failures} if failures else None
"""
)


SLOW_APP = (
    TABLE_HELPER
    + """
import json
import time


def lambda_handler(event, context):
    if "Records" not in event:  # invoked directly
        time.sleep(float(event.get("sleep", 0)))
        return {"pid": os.getpid(), "remaining_ms": context.get_remaining_time_in_millis()}
    for record in event["Records"]:
        body = json.loads(record["body"])
        receive_count = record["attributes"]["ApproximateReceiveCount"]
        if body.get("hold") and receive_count == "1":
            time.sleep(context.get_remaining_time_in_millis() / 1000 + 5)  # until killed
        table().put_item(Item={"pk": body["id"], "pid": str(os.getpid()), "receive_count": receive_count})
"""
)


def _wait_for(predicate: Callable[[], Any], timeout: float = 30, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _write_project(root: Path) -> Path:
    (root / "echo").mkdir()
    (root / "echo" / "app.py").write_text(textwrap.dedent(ECHO_APP))
    (root / "worker").mkdir()
    (root / "worker" / "app.py").write_text(textwrap.dedent(WORKER_APP))
    (root / "slow").mkdir()
    (root / "slow" / "app.py").write_text(textwrap.dedent(SLOW_APP))
    path = root / "template.yaml"
    path.write_text(TEMPLATE)
    return path


# -- a stack of its own (runs first: moto's state is process-global) ---------------------------


def test_stack_with_sandbox_sets_and_restores_environment(tmp_path: Path) -> None:
    # Runs before the module's shared stack exists: one LocalStack per process at a time.
    template = _write_project(tmp_path)
    saved = {key: os.environ.get(key) for key in ("OPTIMIZED_API_URL", "AWS_ENDPOINT_URL", "TABLE")}
    os.environ.pop("OPTIMIZED_API_URL", None)
    try:
        with LocalStack(template, api_port=0, env={"OPTIMIZED_GROUP_LIMIT": "3"}, poller_workers=1) as local:
            assert local.sandbox is not None
            assert os.environ["OPTIMIZED_API_URL"] == local.sandbox.url
            assert os.environ["OPTIMIZED_API_TOKEN"]
            assert local.sandbox.group_limit == 3
            assert local.api_key.startswith("dev-")
            assert os.environ["RELAY_API_KEYS"] == local.api_key
            assert os.environ["TABLE"] == "Table"
            assert httpx.get(f"{local.api_url}/items/x").status_code == 200
        assert "OPTIMIZED_API_URL" not in os.environ
        assert os.environ.get("TABLE") == saved["TABLE"]
        assert os.environ.get("AWS_ENDPOINT_URL") == saved["AWS_ENDPOINT_URL"]
    finally:
        if saved["OPTIMIZED_API_URL"] is not None:
            os.environ["OPTIMIZED_API_URL"] = saved["OPTIMIZED_API_URL"]


def test_repo_template_resources_and_environment() -> None:
    template = load_template(REPO / "template.yaml")
    server, endpoint = aws.start_moto()
    try:
        resources = aws.create_resources(template, endpoint, "us-east-1")
        ddb = aws.client("dynamodb", endpoint, "us-east-1")
        table = ddb.describe_table(TableName=resources.name("RelayTable"))["Table"]
        assert {index["IndexName"] for index in table["GlobalSecondaryIndexes"]} >= {"gsi1", "gsi2"}
        sqs = aws.client("sqs", endpoint, "us-east-1")
        attrs = sqs.get_queue_attributes(QueueUrl=resources.url("DispatchQueue"), AttributeNames=["All"])
        redrive = json.loads(attrs["Attributes"]["RedrivePolicy"])
        assert redrive["deadLetterTargetArn"] == resources.arn("DispatchDeadLetterQueue")
        env = aws.function_environment(template, resources, "DispatchFunction")
        assert env["RELAY_TABLE_NAME"] == "RelayTable"
        assert env["DISPATCH_QUEUE_URL"] == resources.url("DispatchQueue")
        assert env["DISPATCH_DLQ_URL"] == resources.url("DispatchDeadLetterQueue")
        # Parameter-derived settings come from the user's environment / code defaults locally.
        for name in ("OPTIMIZED_API_URL", "OPTIMIZED_GROUP_LIMIT", "POWERTOOLS_LOG_LEVEL"):
            assert name not in env
    finally:
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    template = _write_project(tmp_path_factory.mktemp("project"))
    with LocalStack(template, api_port=0, sandbox=False, poller_workers=2, max_concurrency=4) as local:
        yield local


@pytest.fixture
def sqs(stack: LocalStack) -> Any:
    return boto3.client(
        "sqs", endpoint_url=stack.moto_endpoint, region_name="us-east-1", **aws.DUMMY_CREDENTIALS
    )


@pytest.fixture
def ddb(stack: LocalStack) -> Any:
    return boto3.client(
        "dynamodb", endpoint_url=stack.moto_endpoint, region_name="us-east-1", **aws.DUMMY_CREDENTIALS
    )


# -- template ---------------------------------------------------------------------------------------


def test_short_tags_load_into_long_form() -> None:
    template = loads(TEMPLATE)
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["TABLE"] == {"Ref": "Table"}
    assert env["WORK_QUEUE_URL"] == {"Fn::GetAtt": ["WorkQueue", "QueueUrl"]}
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"  # a string, not a date
    resolver = Resolver(template, {"Table": "T"}, {"WorkQueue": {"QueueUrl": "http://q"}}, region="eu-west-1")
    assert resolver.resolve(env) == {
        "TABLE": "T",
        "WORK_QUEUE_URL": "http://q",
        "FROM_PARAMETER": "INFO",
        "REGION_SUB": "eu-west-1-T",
    }
    assert resolver.resolve({"Fn::Join": ["-", [{"Ref": "AWS::AccountId"}, "x"]]}) == "123456789012-x"
    assert resolver.resolve({"a": {"Ref": "AWS::NoValue"}, "b": 1}) == {"b": 1}


# -- resources ----------------------------------------------------------------------------------


def test_table_with_gsi_and_ttl_created_from_template(stack: LocalStack, ddb: Any) -> None:
    table = ddb.describe_table(TableName="Table")["Table"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    assert [index["IndexName"] for index in table["GlobalSecondaryIndexes"]] == ["gsi1"]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    ttl = ddb.describe_time_to_live(TableName="Table")["TimeToLiveDescription"]
    assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}
    assert stack.resources is not None
    assert stack.resources.name("Table") == "Table"


def test_queues_with_redrive_and_fifo_created_from_template(stack: LocalStack, sqs: Any) -> None:
    resources = stack.resources
    assert resources is not None
    attrs = sqs.get_queue_attributes(QueueUrl=resources.url("WorkQueue"), AttributeNames=["All"])[
        "Attributes"
    ]
    assert attrs["VisibilityTimeout"] == "1"
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == resources.arn("WorkDeadLetterQueue")
    assert int(redrive["maxReceiveCount"]) == 2
    assert resources.name("OrderedQueue") == "OrderedQueue.fifo"
    fifo = sqs.get_queue_attributes(QueueUrl=resources.url("OrderedQueue"), AttributeNames=["All"])[
        "Attributes"
    ]
    assert fifo["FifoQueue"] == "true"
    assert fifo["ContentBasedDeduplication"] == "true"


# -- HTTP API -----------------------------------------------------------------------------------


def test_http_event_is_payload_v2(stack: LocalStack) -> None:
    response = httpx.get(
        f"{stack.api_url}/items/a%20b?x=1&x=2&y=",
        headers=[("X-Multi", "a"), ("X-Multi", "b"), ("Cookie", "c1=1; c2=2"), ("User-Agent", "tests")],
    )
    assert response.status_code == 200
    assert response.headers["x-echo"] == "1"
    assert response.headers["set-cookie"] == "session=abc; Path=/"
    payload = response.json()
    event = payload["event"]
    assert event["version"] == "2.0"
    assert event["routeKey"] == "GET /items/{id}"
    assert event["rawPath"] == "/items/a%20b"
    assert event["rawQueryString"] == "x=1&x=2&y="
    assert event["queryStringParameters"] == {"x": "1,2", "y": ""}
    assert event["pathParameters"] == {"id": "a b"}
    assert event["headers"]["x-multi"] == "a,b"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["c1=1", "c2=2"]
    assert event["isBase64Encoded"] is False
    assert "body" not in event
    ctx = event["requestContext"]
    assert ctx["stage"] == "$default"
    assert ctx["routeKey"] == "GET /items/{id}"
    assert ctx["http"] == {
        "method": "GET",
        "path": "/items/a%20b",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "tests",
    }
    assert abs(ctx["timeEpoch"] / 1000 - time.time()) < 60
    assert ctx["requestId"]
    assert ctx["accountId"]
    assert ctx["apiId"]
    assert ctx["domainName"]
    # Same shape as what tests build directly.
    built = build_http_event("GET", "/items/a%20b?x=1&x=2&y=", {}, b"", "GET /items/{id}", {"id": "a b"})
    assert set(built) <= set(event) | {"body"}
    assert set(built["requestContext"]) == set(ctx)
    # Context and environment of the function.
    assert payload["context"]["function_name"] == "EchoFunction"
    assert 0 < payload["context"]["remaining_ms"] <= 5000
    assert payload["context"]["memory"] == 256
    env = payload["env"]
    assert env["TABLE"] == "Table"
    assert env["ECHO_ONLY"] == "yes"
    assert env["REGION_SUB"] == "us-east-1-Table"
    assert env["WORK_QUEUE_URL"] == stack.resources.url("WorkQueue")  # type: ignore[union-attr]
    assert env["FROM_PARAMETER"] is None
    assert env["AWS_ENDPOINT_URL"] == stack.moto_endpoint


def test_request_ids_are_fresh_per_invoke(stack: LocalStack) -> None:
    first = httpx.get(f"{stack.api_url}/items/1").json()
    second = httpx.get(f"{stack.api_url}/items/1").json()
    assert first["context"]["request_id"] != second["context"]["request_id"]
    assert first["event"]["requestContext"]["requestId"] != second["event"]["requestContext"]["requestId"]


def test_text_and_binary_bodies(stack: LocalStack) -> None:
    text = httpx.post(f"{stack.api_url}/items/7", json={"a": "ä"}).json()["event"]
    assert text["isBase64Encoded"] is False
    assert json.loads(text["body"]) == {"a": "ä"}
    assert text["routeKey"] == "POST /items/{id}"

    raw = b"\x00\xff\xfe binary"
    binary = httpx.post(
        f"{stack.api_url}/items/7", content=raw, headers={"Content-Type": "application/octet-stream"}
    ).json()["event"]
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == raw

    not_utf8 = httpx.post(
        f"{stack.api_url}/items/7", content=b"\xff\xfe", headers={"Content-Type": "text/plain"}
    ).json()["event"]
    assert not_utf8["isBase64Encoded"] is True
    assert base64.b64decode(not_utf8["body"]) == b"\xff\xfe"


def test_routing_specificity_any_and_greedy(stack: LocalStack) -> None:
    special = httpx.get(f"{stack.api_url}/items/special").json()["event"]
    assert special["routeKey"] == "GET /items/special"
    assert "pathParameters" not in special
    deep = httpx.delete(f"{stack.api_url}/files/a/b/c.txt").json()["event"]
    assert deep["routeKey"] == "ANY /files/{proxy+}"
    assert deep["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert deep["requestContext"]["http"]["method"] == "DELETE"


def test_response_shapes_and_errors(stack: LocalStack, capfd: pytest.CaptureFixture[str]) -> None:
    binary = httpx.get(f"{stack.api_url}/files/raw.bin")
    assert binary.status_code == 201
    assert binary.content == b"\x00\xffraw"
    plain = httpx.get(f"{stack.api_url}/items/plain")
    assert plain.status_code == 200
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == {"plain": True}
    missing = httpx.get(f"{stack.api_url}/nope")
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found"}
    wrong_method = httpx.put(f"{stack.api_url}/items/1")
    assert wrong_method.status_code == 404
    boom = httpx.get(f"{stack.api_url}/items/boom")
    assert boom.status_code == 500
    assert boom.json() == {"message": "Internal Server Error"}
    assert "RuntimeError: boom" in capfd.readouterr().err


def test_to_http_response_like_api_gateway() -> None:
    assert to_http_response("hi") == (200, [("Content-Type", "application/json")], b"hi")
    status, _headers, body = to_http_response({"statusCode": 204})
    assert (status, body) == (204, b"")


# -- SQS pollers --------------------------------------------------------------------------------


def _queue_count(sqs: Any, url: str) -> int:
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def _dlq_bodies(sqs: Any, url: str) -> list[str]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get("Messages")
    return sorted(message["Body"] for message in messages or [])


def _drain(sqs: Any, url: str) -> None:
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def test_poller_deletes_successes_and_redrives_failures(stack: LocalStack, sqs: Any, ddb: Any) -> None:
    resources = stack.resources
    assert resources is not None
    queue, dlq = resources.url("WorkQueue"), resources.url("WorkDeadLetterQueue")
    for body in ("ok-1", "ok-2", "fail", "ok-3"):
        sqs.send_message(QueueUrl=queue, MessageBody=body)

    def stored(pk: str) -> bool:
        return "Item" in ddb.get_item(TableName="Table", Key={"pk": {"S": pk}})

    _wait_for(lambda: all(stored(f"ok-{n}") for n in (1, 2, 3)), what="successes stored")
    _wait_for(lambda: _dlq_bodies(sqs, dlq) == ["fail"], what="failure in the DLQ")
    _wait_for(lambda: _queue_count(sqs, queue) == 0, what="work queue drained")
    assert not stored("fail")
    record = json.loads(ddb.get_item(TableName="Table", Key={"pk": {"S": "ok-1"}})["Item"]["record"]["S"])
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == resources.arn("WorkQueue")
    assert record["awsRegion"] == "us-east-1"
    assert set(record["attributes"]) >= {
        "ApproximateReceiveCount",
        "SentTimestamp",
        "SenderId",
        "ApproximateFirstReceiveTimestamp",
    }
    assert record["md5OfBody"]
    assert record["receiptHandle"]
    assert record["messageId"]
    stats = stack.poller_stats()["WorkerFunction.Work"]
    assert stats["failed"] >= 2  # "fail" was handed back on each of its two receives
    assert stats["deleted"] >= 3
    _drain(sqs, dlq)  # not purge_queue: moto enforces its once-a-minute limit


def test_handler_exception_deletes_nothing_and_message_reaches_dlq(stack: LocalStack, sqs: Any) -> None:
    resources = stack.resources
    assert resources is not None
    queue, dlq = resources.url("WorkQueue"), resources.url("WorkDeadLetterQueue")
    errors_before = stack.poller_stats()["WorkerFunction.Work"]["errors"]
    sqs.send_message(QueueUrl=queue, MessageBody="boom")
    _wait_for(lambda: _dlq_bodies(sqs, dlq) == ["boom"], what="boom in the DLQ")
    assert stack.poller_stats()["WorkerFunction.Work"]["errors"] - errors_before >= 2
    _drain(sqs, dlq)  # not purge_queue: moto enforces its once-a-minute limit


def test_fifo_records_carry_group_and_message_attributes(stack: LocalStack, sqs: Any, ddb: Any) -> None:
    resources = stack.resources
    assert resources is not None
    sqs.send_message(
        QueueUrl=resources.url("OrderedQueue"),
        MessageBody="fifo-1",
        MessageGroupId="group-a",
        # Explicit: moto only assigns a SequenceNumber when a MessageDeduplicationId is given.
        MessageDeduplicationId="dedup-1",
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "wake"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x01\x02"},
        },
    )

    def item() -> dict[str, Any] | None:
        return ddb.get_item(TableName="Table", Key={"pk": {"S": "fifo-1"}}).get("Item")

    record = json.loads(_wait_for(item, what="fifo message processed")["record"]["S"])
    assert record["attributes"]["MessageGroupId"] == "group-a"
    assert record["attributes"]["MessageDeduplicationId"] == "dedup-1"
    assert record["attributes"]["SequenceNumber"]
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "wake",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert base64.b64decode(record["messageAttributes"]["blob"]["binaryValue"]) == b"\x01\x02"
    assert record["eventSourceARN"].endswith(":OrderedQueue.fifo")


# -- the rest -----------------------------------------------------------------------------------


def test_reset_aws_recreates_empty_resources(stack: LocalStack, ddb: Any) -> None:
    ddb.put_item(TableName="Table", Item={"pk": {"S": "to-be-wiped"}})
    stack.reset_aws()
    assert ddb.scan(TableName="Table")["Count"] == 0
    assert (
        ddb.describe_time_to_live(TableName="Table")["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
    )


def test_functions_with_same_named_modules_run_in_their_own_processes(tmp_path: Path) -> None:
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "helper.py").write_text(f"NAME = {name!r}\n")
        (tmp_path / name / "app.py").write_text(
            "import os, sys\nimport helper\n\n"
            "def lambda_handler(event, context):\n"
            "    return {'name': helper.NAME, 'pid': os.getpid(), 'app': sys.modules['app'].__file__,\n"
            "            'remaining_ms': context.get_remaining_time_in_millis()}\n"
        )
    one = LocalFunction("OneFunction", tmp_path / "one", "app.lambda_handler", timeout_s=2)
    two = LocalFunction("TwoFunction", tmp_path / "two", "app.lambda_handler", timeout_s=2)
    try:
        first, second = one.invoke({}), two.invoke({})
        assert (first["name"], second["name"]) == ("one", "two")
        assert first["app"] == str(tmp_path / "one" / "app.py")
        assert second["app"] == str(tmp_path / "two" / "app.py")
        assert first["pid"] != second["pid"] != os.getpid()
        assert 0 < first["remaining_ms"] <= 2000
        assert "helper" not in sys.modules  # nothing of theirs in the stack's process
        assert one.invoke({})["pid"] == first["pid"]  # warm: the same instance again
        assert [i.pid for i in one.instances()] == [first["pid"]]
    finally:
        one.stop()
        two.stop()
    assert not process_alive(first["pid"])
    assert not process_alive(second["pid"])


def test_concurrent_requests_run_on_separate_instances_each_with_its_own_event(
    stack: LocalStack, tmp_path: Path
) -> None:
    parties = 3
    url = f"{stack.api_url}/items/{{n}}?meet={tmp_path}&parties={parties}"
    with ThreadPoolExecutor(parties) as pool:
        answers = list(
            pool.map(lambda n: httpx.post(url.format(n=n), json={"n": n}, timeout=60), range(parties))
        )
    seen = [answer.json() for answer in answers]
    assert [json.loads(s["event"]["body"]) for s in seen] == [{"n": n} for n in range(parties)]
    assert [s["event"]["pathParameters"] for s in seen] == [{"id": str(n)} for n in range(parties)]
    # They met inside their handlers, so they ran at once: on three instances, one each.
    assert len({s["pid"] for s in seen}) == parties
    assert {s["pid"] for s in seen} <= {i.pid for i in stack.function("EchoFunction").instances()}


def test_invocation_over_its_timeout_is_killed_and_fails(stack: LocalStack) -> None:
    nap = stack.function("NapFunction")  # Timeout: 1
    assert nap.max_concurrency == 2  # ReservedConcurrentExecutions
    warm = nap.invoke({"sleep": 0})
    assert 0 < warm["remaining_ms"] <= 1000
    timeouts_before = nap.timeouts
    started = time.monotonic()
    with pytest.raises(InvocationTimeout, match=r"Task timed out after 1\.00 seconds") as failed:
        nap.invoke({"sleep": 30})  # on the warm instance: the only idle one
    assert time.monotonic() - started < 15
    assert failed.value.error_type == "Sandbox.Timedout"
    assert nap.timeouts == timeouts_before + 1
    assert not process_alive(warm["pid"])
    assert warm["pid"] not in [i.pid for i in nap.instances()]
    assert nap.invoke({"sleep": 0})["pid"] != warm["pid"]  # a fresh instance


def test_handler_error_fails_the_invocation_and_keeps_the_instance(stack: LocalStack) -> None:
    echo = stack.function("EchoFunction")
    event = build_http_event("GET", "/items/boom", {}, b"", "GET /items/{id}", {"id": "boom"})
    with pytest.raises(InvocationError, match="RuntimeError: boom") as failed:
        echo.invoke(event)
    assert (failed.value.error_type, failed.value.error_message) == ("RuntimeError", "boom")
    assert 'raise RuntimeError("boom")' in failed.value.stack_trace
    assert not isinstance(failed.value, InstanceCrashed | InvocationTimeout)
    assert echo.crashes == 0


def test_instance_killed_mid_invocation_message_comes_back_to_a_fresh_instance(
    stack: LocalStack, sqs: Any, ddb: Any
) -> None:
    slow = stack.function("SlowFunction")
    errors_before = stack.poller_stats()["SlowFunction.Slow"]["errors"]
    crashes_before = slow.crashes
    body = json.dumps({"id": "held-then-killed", "hold": True})
    sqs.send_message(QueueUrl=stack.resources.url("SlowQueue"), MessageBody=body)  # type: ignore[union-attr]
    [pid] = _wait_for(slow.busy_pids, what="the first delivery running")
    os.kill(pid, signal.SIGKILL)

    def done() -> dict[str, Any] | None:
        return ddb.get_item(TableName="Table", Key={"pk": {"S": "held-then-killed"}}).get("Item")

    item = _wait_for(done, what="the message redelivered (after its 2 s visibility) and done")
    assert item["receive_count"]["S"] == "2"
    assert int(item["pid"]["S"]) != pid
    assert not process_alive(pid)
    assert pid not in [i.pid for i in slow.instances()]
    assert slow.crashes == crashes_before + 1
    assert stack.poller_stats()["SlowFunction.Slow"]["errors"] == errors_before + 1
    _wait_for(lambda: _queue_count(sqs, stack.resources.url("SlowQueue")) == 0, what="message deleted")  # type: ignore[union-attr]


def test_environment_update_retires_instances(stack: LocalStack) -> None:
    def env() -> dict[str, Any]:
        return httpx.get(f"{stack.api_url}/items/env").json()

    before = env()
    assert before["env"]["ECHO_ONLY"] == "yes"
    with stack.environment(ECHO_ONLY="changed"):
        assert os.environ["ECHO_ONLY"] == "changed"
        during = env()
        assert during["env"]["ECHO_ONLY"] == "changed"
        assert during["pid"] != before["pid"]
        assert not process_alive(before["pid"])  # it was idle: retired at once
    after = env()
    assert after["env"]["ECHO_ONLY"] == "yes"
    assert after["pid"] != during["pid"]


def _run_translate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "layers/relay"), str(REPO / "local")])}
    return subprocess.run(
        [sys.executable, "-m", "relay_local.translate", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_translate_repo_template() -> None:
    result = _run_translate("template.yaml")
    assert result.returncode == 0, result.stderr
    translated = json.loads(result.stdout)
    types = {resource["Type"] for resource in translated["Resources"].values()}
    assert "AWS::Lambda::EventSourceMapping" in types
    assert "AWS::Serverless::Function" not in types


def test_translate_reports_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n    Type: AWS::Serverless::Function\n"
        "    Properties:\n      CodeUri: x/\n      Handler: app.h\n      Runtime: python3.13\n"
        "      Events:\n        E:\n          Type: SQS\n          Properties: {}\n"
    )
    result = _run_translate(str(bad))
    assert result.returncode != 0
    assert "translate:" in result.stderr

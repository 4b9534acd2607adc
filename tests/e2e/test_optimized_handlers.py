"""The sample events in events/ invoke the deployed handlers directly (as `sam local invoke` or
the Lambda console would), against the shared local stack's AWS and sandbox Optimized.app."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import pytest
from conftest import Api, batches_for, load_event, queue_depth, wait_for
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

SAMPLE_GROUP = "cc6cdf44-acf4-4b39-bd17-55b70b769812"


def _trigger_event(stack: LocalStack, group: str, key: str) -> dict[str, Any]:
    event = load_event("optimized_trigger.json")
    event["headers"]["authorization"] = f"Bearer {stack.api_key}"
    event["headers"]["idempotency-key"] = key
    body = json.loads(event["body"])
    body["group_id"] = group
    event["body"] = json.dumps(body)
    return event


def _get_event(stack: LocalStack, execution_id: str) -> dict[str, Any]:
    event = load_event("get_execution.json")
    old = event["pathParameters"]["id"]
    event["headers"]["authorization"] = f"Bearer {stack.api_key}"
    event["pathParameters"]["id"] = execution_id
    event["rawPath"] = event["rawPath"].replace(old, execution_id)
    event["requestContext"]["http"]["path"] = event["rawPath"]
    return event


def _wake_event(group: str) -> dict[str, Any]:
    event = load_event("dispatch_wake.json")
    record = event["Records"][0]
    assert json.loads(record["body"])["group_id"] == SAMPLE_GROUP
    record["body"] = record["body"].replace(SAMPLE_GROUP, group)
    return event


def test_sample_events_are_what_api_gateway_and_sqs_send() -> None:
    trigger = load_event("optimized_trigger.json")
    assert trigger["version"] == "2.0"
    assert trigger["routeKey"] == "POST /v1/optimized/triggers"
    assert json.loads(trigger["body"])["group_id"] == SAMPLE_GROUP
    get = load_event("get_execution.json")
    assert get["routeKey"] == "GET /v1/executions/{id}"
    assert get["rawPath"] == f"/v1/executions/{get['pathParameters']['id']}"
    [record] = load_event("dispatch_wake.json")["Records"]
    assert record["eventSource"] == "aws:sqs"
    assert json.loads(record["body"])["kind"] == "wake"


def test_trigger_event_through_the_api_handler(relay: LocalStack, api: Api, group: str) -> None:
    handler = relay.function("ApiFunction")
    key = f"sample-{uuid.uuid4()}"
    response = handler.invoke(_trigger_event(relay, group, key))
    assert response["statusCode"] == 202, response
    accepted = json.loads(response["body"])
    assert (accepted["status"], accepted["profiles"], accepted["chunks"]) == ("queued", 2, 1)
    # The same event again (a client retry): the same answer, nothing new queued.
    again = handler.invoke(_trigger_event(relay, group, key))
    assert json.loads(again["body"]) == accepted

    done = api.wait(accepted["execution_id"])
    assert done["status"] == "scheduled"
    [batch] = batches_for(relay, group)
    # 09:00 in Helsinki in June is 06:00 UTC, sent in the upstream's format.
    assert batch.schedule == {
        "start_at": "2030-06-01 06:00:00",
        "campaign": {"uuid": "9e679c93-ff33-4b1e-bfad-1ac77afe1aef"},
        "calls_per_minute": 30,
    }
    assert [p["person"] for p in batch.profiles] == [
        {"phone_number": "+35840123456", "first_name": "Aino"},
        {"email_address": "eino@example.com"},
    ]
    assert batch.profiles[0]["attributes"] == [{"name": "tier", "value": "gold"}]

    got = handler.invoke(_get_event(relay, accepted["execution_id"]))
    assert got["statusCode"] == 200
    view = json.loads(got["body"])
    assert view["status"] == "scheduled"  # with Optimized.app, to start at the time asked for
    assert view["scheduled_for"] == "2030-06-01T06:00:00.000Z"
    assert view["chunk_details"][0]["batch_uuid"] == batch.batch_uuid


def test_api_handler_refuses_the_sample_without_a_valid_key(relay: LocalStack, group: str) -> None:
    event = _trigger_event(relay, group, "k")
    event["headers"]["authorization"] = "Bearer not-a-key"
    response = relay.function("ApiFunction").invoke(event)
    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"]["code"] == "unauthorized"
    missing = copy.deepcopy(event)
    del missing["headers"]["authorization"]
    assert relay.function("ApiFunction").invoke(missing)["statusCode"] == 401
    unknown = relay.function("ApiFunction").invoke(_get_event(relay, str(uuid.uuid4())))
    assert unknown["statusCode"] == 404


def test_dispatch_handler_invoked_twice_never_resends(
    relay: LocalStack, api: Api, sqs: Any, group: str
) -> None:
    accepted = api.trigger(group, 120).json()
    assert api.wait(accepted["execution_id"])["status"] == "completed"
    wait_for(lambda: queue_depth(sqs, relay.resources.url("DispatchQueue")) == 0, what="dispatch idle")
    assert len(batches_for(relay, group)) == 3
    dispatcher = relay.function("DispatchFunction")
    for _ in range(2):
        result = dispatcher.invoke(_wake_event(group))
        assert result == {"batchItemFailures": []}
    assert len(batches_for(relay, group)) == 3
    assert api.execution(accepted["execution_id"])["chunks"]["sent"] == 3

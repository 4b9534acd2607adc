"""Batch.com profile updates end to end over loopback: the relay's functions on the moto server
(real boto3) and the sandbox Batch (real httpx): the API, packing of many small triggers into
full calls, partial errors mapped back to index and ref, 429 without Retry-After retried to
success, 400/401 failed with Batch's error, 5xx retried then dead-lettered, ambiguous timeouts,
cancel."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from conftest import Api, dlq_messages, relay_env
from relay.destinations.batch.accept import accept_operations
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def op(i: int, **extra: Any) -> dict[str, Any]:
    return {"identifiers": {"custom_id": f"user-{i}"}, "attributes": {"plan": "gold", "n": i}, **extra}


def post(api: Api, operations: list[dict[str, Any]], *, key: str | None = None, expect: int = 202) -> dict:
    headers = {"Idempotency-Key": key} if key else {}
    response = api.http.post("/v1/batch/profiles", json={"operations": operations}, headers=headers)
    assert response.status_code == expect, response.text
    return response.json()


def test_profile_updates_through_the_api_reach_batch(api: Api, relay: LocalStack) -> None:
    operations = [op(i, ref=f"crm-{i}") for i in range(3)]
    answer = post(api, operations, key="k-1")
    assert answer["status"] == "queued"
    assert answer["operations"] == 3
    assert answer["calls"] == 1
    done = api.wait(answer["execution_id"])
    assert done["status"] == "completed", done
    assert done["destination"] == "batch"
    assert done["operations"]["delivered"] == 3
    assert done["errors"] == []
    assert relay.sandbox_batch.profiles["custom_id:user-2"]["attributes"] == {"plan": "gold", "n": 2}
    # The same key and body: the same execution, nothing sent again.
    assert post(api, operations, key="k-1")["execution_id"] == answer["execution_id"]
    assert len(relay.sandbox_batch.profile_calls()) == 1


def test_invalid_operations_are_refused_before_anything_is_stored(api: Api, relay: LocalStack) -> None:
    operations = [op(i) for i in range(13)]
    operations[12] = {"identifiers": {"custom_id": "a", "installation": "b"}}
    answer = post(api, operations, expect=422)
    assert answer["error"]["code"] == "validation_failed"
    assert answer["error"]["details"][0]["field"] == "operations[12].identifiers"
    listed = api.http.get("/v1/executions").json()
    assert listed["items"] == []


def test_the_accept_entry_point_is_idempotent_on_its_execution_id(api: Api, relay: LocalStack) -> None:
    execution_id = str(uuid.uuid4())
    answer = accept_operations([op(i) for i in range(3)], execution_id=execution_id, origin="test")
    assert answer == {"execution_id": execution_id, "status": "queued", "operations": 3, "calls": 1}
    assert api.wait(execution_id)["status"] == "completed"
    again = accept_operations([op(9)], execution_id=execution_id, origin="test")
    assert again["execution_id"] == execution_id
    assert again["operations"] == 3
    assert "custom_id:user-9" not in relay.sandbox_batch.profiles


def test_many_single_operation_triggers_are_packed_into_full_calls(api: Api, relay: LocalStack) -> None:
    n = 450
    ids = [str(uuid.uuid4()) for _ in range(n)]
    assert relay.pollers is not None
    with relay.pollers.paused():  # the triggers arrive faster than one dispatcher round
        for i, execution_id in enumerate(ids):
            accept_operations([op(i)], execution_id=execution_id, origin="test")
    for execution_id in ids:
        assert api.wait(execution_id)["status"] == "completed"
    calls = relay.sandbox_batch.profile_calls()
    assert sum(c.operations for c in calls) == n
    assert len(calls) == math.ceil(n / 200)
    assert max(c.operations for c in calls) == 200
    assert relay.sandbox_batch.rate_limited == 0


def test_partial_errors_are_mapped_to_each_callers_index_and_ref(api: Api, relay: LocalStack) -> None:
    """Operations validated by another producer (the accept entry point checks nothing) that
    Batch refuses one by one: each refusal lands on its own execution, index and ref."""
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    both_ids = {"identifiers": {"custom_id": "x", "installation": "y"}}
    bad_event = {"identifiers": {"custom_id": "z"}, "events": [{"name": "Not-Valid"}]}
    assert relay.pollers is not None
    with relay.pollers.paused():  # both in the same call
        accept_operations([op(0), both_ids, op(2)], execution_id=first, origin="t", refs=["r0", "r1", "r2"])
        accept_operations([bad_event, op(4)], execution_id=second, origin="t", refs=["s0", None])
    one, two = api.wait(first), api.wait(second)
    assert len(relay.sandbox_batch.profile_calls()) == 1
    assert one["status"] == two["status"] == "partially_failed"
    assert one["operations"]["delivered"] == 2
    assert one["operations"]["failed"] == 1
    assert [(e["index"], e["ref"], e["category"]) for e in one["errors"]] == [(1, "r1", "identifiers")]
    assert [(e["index"], e["ref"], e["category"]) for e in two["errors"]] == [(0, "s0", "events")]
    assert "Not-Valid" in two["errors"][0]["reason"]
    assert "custom_id:user-4" in relay.sandbox_batch.profiles


def test_a_429_without_retry_after_is_retried_to_success(api: Api, relay: LocalStack) -> None:
    relay.sandbox_batch.fail_next(429, 2)
    answer = post(api, [op(i) for i in range(5)])
    done = api.wait(answer["execution_id"])
    assert done["status"] == "completed"
    assert relay.sandbox_batch.rate_limited == 2
    assert len(relay.sandbox_batch.profile_calls()) == 1
    assert len(relay.sandbox_batch.profile_calls(status=429)) == 2


def test_a_429_with_retry_after_is_honoured(api: Api, relay: LocalStack) -> None:
    relay.sandbox_batch.fail_next(429, headers={"Retry-After": "1"})
    answer = post(api, [op(1)])
    assert api.wait(answer["execution_id"])["status"] == "completed"
    refused, sent = relay.sandbox_batch.profile_calls(429)[0], relay.sandbox_batch.profile_calls()[0]
    assert sent.arrived_at - refused.arrived_at >= 1.0


@pytest.mark.parametrize(("status", "code"), [(400, "BAD_REQUEST"), (401, "AUTHENTICATION_INVALID")])
def test_400_and_401_fail_with_batchs_error(api: Api, relay: LocalStack, status: int, code: str) -> None:
    relay.sandbox_batch.fail_next(status)
    answer = post(api, [op(1, ref="one"), op(2)])
    done = api.wait(answer["execution_id"])
    assert done["status"] == "failed"
    assert done["operations"]["failed"] == 2
    first = done["errors"][0]
    assert (first["index"], first["ref"], first["status"], first["error_code"]) == (0, "one", status, code)


def test_5xx_is_retried_to_success(api: Api, relay: LocalStack) -> None:
    relay.sandbox_batch.fail_next(503, 2)
    answer = post(api, [op(1)])
    assert api.wait(answer["execution_id"])["status"] == "completed"
    assert len(relay.sandbox_batch.profile_calls(503)) == 2


def test_5xx_beyond_the_retry_time_is_dead_lettered_visibly(api: Api, relay: LocalStack, sqs: Any) -> None:
    relay.sandbox_batch.fail_next(500, 1000)
    with relay_env(BATCH_RETRY_FOR_S="1"):
        answer = post(api, [op(1), op(2)])
        done = api.wait(answer["execution_id"])
    assert done["status"] == "failed"
    assert done["operations"]["dead_lettered"] == 2
    assert done["errors"][0]["status"] == 500
    parked = dlq_messages(sqs, relay.resources.url("BatchDeadLetterQueue"))
    assert [m["execution_id"] for m in parked] == [answer["execution_id"]]


def test_a_timeout_after_sending_is_ambiguous_and_not_resent(api: Api, relay: LocalStack) -> None:
    relay.sandbox_batch.hang_next(2.5)  # the relay's read timeout is 1 s here
    answer = post(api, [op(1, ref="r")])
    done = api.wait(answer["execution_id"])
    assert done["status"] == "partially_failed"
    assert done["operations"]["ambiguous"] == 1
    assert done["errors"][0]["ref"] == "r"
    assert len(relay.sandbox_batch.profile_calls()) == 1  # applied once, never sent again


def test_cancel_stops_what_is_not_sent(api: Api, relay: LocalStack) -> None:
    assert relay.pollers is not None
    with relay.pollers.paused():
        answer = post(api, [op(i) for i in range(3)])
        cancelled = api.http.delete(f"/v1/executions/{answer['execution_id']}")
        assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert api.wait(answer["execution_id"])["operations"]["cancelled"] == 3
    assert api.http.delete(f"/v1/executions/{answer['execution_id']}").status_code == 409
    assert relay.sandbox_batch.profile_calls() == []

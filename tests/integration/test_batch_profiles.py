"""Batch.com profile updates end to end over loopback: the relay (moto server, real boto3) and the
sandbox Batch (real httpx): packing, partial errors mapped back, 429 without Retry-After, 4xx,
ambiguous timeouts."""

from __future__ import annotations

import math
import uuid
from typing import Any

from relay.destinations.batch.accept import accept_operations

from tests.conftest import FINISHED, Api


def op(i: int, **extra: Any) -> dict[str, Any]:
    return {"identifiers": {"custom_id": f"user-{i}"}, "attributes": {"plan": "gold", "n": i}, **extra}


def test_accepted_operations_reach_the_sandbox(api: Api, relay) -> None:
    execution_id = str(uuid.uuid4())
    answer = accept_operations([op(i) for i in range(3)], execution_id=execution_id, origin="test")
    assert answer == {"execution_id": execution_id, "status": "queued", "operations": 3, "calls": 1}
    done = api.wait(execution_id)
    assert done["status"] == "completed", done
    assert done["operations"]["delivered"] == 3
    assert set(relay.sandbox_batch.profiles) == {f"custom_id:user-{i}" for i in range(3)}
    # A repeat with the same id changes nothing and answers the same execution.
    again = accept_operations([op(9)], execution_id=execution_id, origin="test")
    assert again["execution_id"] == execution_id and again["operations"] == 3
    assert "custom_id:user-9" not in relay.sandbox_batch.profiles


def test_single_operation_triggers_are_packed_into_full_calls(api: Api, relay) -> None:
    n = 450
    ids = [str(uuid.uuid4()) for _ in range(n)]
    for i, execution_id in enumerate(ids):
        accept_operations([op(i)], execution_id=execution_id, origin="test")
    for execution_id in ids:
        assert api.wait(execution_id)["status"] == "completed"
    calls = relay.sandbox_batch.profile_calls()
    assert sum(c.operations for c in calls) == n
    assert len(calls) == math.ceil(n / 200)
    assert relay.sandbox_batch.rate_limited == 0
    assert FINISHED

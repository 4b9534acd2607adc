"""Crashes between two side effects of the Batch.com profile path, and what recovers the work.

Each test crashes a function at one failpoint (``crash_at``), then lets happen what AWS would: the
client retries a 5xx with the same Idempotency-Key, SQS hands a wake-up back after its visibility
timeout (compressed here), the reconciler runs on its schedule. The operations are delivered, or
end ``ambiguous`` where Batch may have them - never sent twice, never stuck.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Api, crash_at, dlq_messages, queue_depth, relay_env, wait_for
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def op(i: int) -> dict[str, Any]:
    return {"identifiers": {"custom_id": f"user-{i}"}, "attributes": {"n": i}}


def post(api: Api, n: int, *, key: str | None = None, expect: int = 202) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    response = api.http.post(
        "/v1/batch/profiles", json={"operations": [op(i) for i in range(n)]}, headers=headers
    )
    assert response.status_code == expect, response.text
    return response.json()


def only_execution(api: Api) -> str:
    [execution] = api.http.get("/v1/executions").json()["items"]
    return execution["execution_id"]


def delivered_once(relay: LocalStack, n: int) -> None:
    sent = [c for c in relay.sandbox_batch.profile_calls()]
    assert sum(c.operations for c in sent) == n  # every operation once, none twice
    assert len(relay.sandbox_batch.profiles) == n


@pytest.fixture
def redelivery(relay: LocalStack) -> Iterator[None]:
    """A failed wake-up is back 2 s after it was taken (6 min in the template), and operations left
    'sending' by a crashed dispatcher count as abandoned after 1 s (15 min)."""
    relay.set_queue_attributes("BatchQueue", VisibilityTimeout="2")
    with relay_env(BATCH_STALE_SENDING_S="1"):
        yield


@pytest.fixture
def reconciling() -> Iterator[None]:
    """The reconciler repairs what waited 1 s (10 min by default); it runs on the stack's tick."""
    with relay_env(RELAY_RECONCILE_AFTER_S="1"):
        yield


@pytest.mark.parametrize(
    "point", ["batch.accept.after_store", "batch.accept.after_arm", "batch.accept.after_wake"]
)
def test_a_crashed_accept_retried_with_its_key_is_delivered_once(
    api: Api, relay: LocalStack, point: str
) -> None:
    with crash_at(point):
        failed = post(api, 3, key="same", expect=500)
    assert failed["error"]["code"]
    answer = post(api, 3, key="same")
    assert api.wait(answer["execution_id"], timeout=40)["status"] == "completed"
    delivered_once(relay, 3)


@pytest.mark.parametrize("point", ["batch.accept.after_store", "batch.accept.after_arm"])
def test_a_crashed_accept_never_retried_is_woken_by_the_reconciler(
    api: Api, relay: LocalStack, point: str, reconciling: None
) -> None:
    with crash_at(point):
        post(api, 2, expect=500)
    assert api.wait(only_execution(api), timeout=40)["status"] == "completed"
    delivered_once(relay, 2)


def test_a_crashed_reconciler_repairs_on_its_next_run(api: Api, relay: LocalStack, reconciling: None) -> None:
    before = relay.failpoints_fired()["batch.reconcile.before_wake"]
    with relay_env(RELAY_FAILPOINTS="batch.accept.after_store=raise;batch.reconcile.before_wake=raise"):
        post(api, 1, expect=500)
        wait_for(
            lambda: relay.failpoints_fired()["batch.reconcile.before_wake"] > before,
            timeout=30,
            what="reconciler crash",
        )
    assert api.wait(only_execution(api), timeout=40)["status"] == "completed"
    delivered_once(relay, 1)


@pytest.mark.parametrize("point", ["batch.dispatch.after_claim", "batch.dispatch.after_send"])
def test_a_dispatcher_crashed_between_claim_and_record_ends_ambiguous_never_resent(
    api: Api, relay: LocalStack, point: str, redelivery: None
) -> None:
    """Claimed, maybe sent, not recorded: the redelivered wake-up settles the operations as
    ambiguous (whether Batch got the call cannot be known) and sends them no more."""
    with crash_at(point):
        answer = post(api, 2)
    done = api.wait(answer["execution_id"], timeout=40)
    assert done["status"] == "partially_failed"
    assert done["operations"]["ambiguous"] == 2
    assert "may have been sent" in done["errors"][0]["error_message"]
    assert len(relay.sandbox_batch.profile_calls()) == (0 if point == "batch.dispatch.after_claim" else 1)


def test_a_dispatcher_crashed_before_its_rewake_completes_the_work(
    api: Api, relay: LocalStack, sqs: Any, redelivery: None
) -> None:
    """A part-filled call lingers for more operations through a wake-up of its own (no wait is
    slept here): the crash before queueing it fails the message, which SQS hands back."""
    with relay_env(BATCH_DISPATCH_MAX_INLINE_WAIT_S="0", BATCH_DISPATCH_LINGER_S="1"):
        with crash_at("batch.dispatch.before_rewake"):
            answer = post(api, 3)
        assert api.wait(answer["execution_id"], timeout=40)["status"] == "completed"
    url = relay.resources.url("BatchQueue")
    wait_for(lambda: queue_depth(sqs, url) == 0, timeout=30, what="no wake-up queued or in flight")
    delivered_once(relay, 3)


def test_a_dispatcher_crashed_after_dead_lettering_ends_visibly(
    api: Api, relay: LocalStack, sqs: Any, redelivery: None
) -> None:
    """Parked in the DLQ, not yet recorded: the chunk is settled (ambiguous: the dispatcher that
    parked it cannot say so any more) and the DLQ keeps its entry, for the alarm and re-drive."""
    relay.sandbox_batch.fail_next(500, 1000)
    with relay_env(BATCH_RETRY_FOR_S="0.5"), crash_at("batch.dispatch.after_dead_letter"):
        answer = post(api, 1)
    done = api.wait(answer["execution_id"], timeout=40)
    assert done["status"] in ("failed", "partially_failed")
    assert done["operations"]["pending"] == 0
    parked = dlq_messages(sqs, relay.resources.url("BatchDeadLetterQueue"))
    assert [m["execution_id"] for m in parked] == [answer["execution_id"]]


def test_a_crashed_cancel_sent_again_cancels_the_rest(api: Api, relay: LocalStack) -> None:
    assert relay.pollers is not None
    with relay.pollers.paused():
        answer = post(api, 450)  # three chunks
        with crash_at("batch.cancel.after_chunk"):
            assert api.http.delete(f"/v1/executions/{answer['execution_id']}").status_code == 500
        again = api.http.delete(f"/v1/executions/{answer['execution_id']}")
        assert again.status_code == 200, again.text
    done = api.wait(answer["execution_id"])
    assert done["status"] == "cancelled"
    assert done["operations"]["cancelled"] == 450
    assert relay.sandbox_batch.profile_calls() == []

"""Crashes between two side effects of the Optimized.app path, and what recovers the work.

Each test crashes a function at one failpoint (``crash_at``), then lets happen what AWS would: the
API client retries a 5xx with the same Idempotency-Key, SQS hands a wake-up back after its
visibility timeout (compressed here), the reconciler runs on its schedule. The work completes, or
ends ``ambiguous`` where the upstream may have it - never sent twice, never stuck.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import (
    Api,
    batches_for,
    crash_at,
    profile,
    queue_depth,
    relay_env,
    schedule,
    wait_for,
)
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


@pytest.fixture
def redelivery(relay: LocalStack) -> Iterator[None]:
    """A failed wake-up is back 2 s after it was taken (6 min in the template), and a chunk left
    'sending' by a crashed dispatcher counts as abandoned after 1 s (15 min)."""
    relay.set_queue_attributes("DispatchQueue", VisibilityTimeout="2")
    with relay_env(DISPATCH_STALE_SENDING_S="1"):
        yield


@pytest.fixture
def reconciling() -> Iterator[None]:
    """The reconciler repairs what waited 1 s (10 min by default); it runs on the stack's tick."""
    with relay_env(RELAY_RECONCILE_AFTER_S="1"):
        yield


def _drained(relay: LocalStack, sqs: Any) -> None:
    url = relay.resources.url("DispatchQueue")
    wait_for(lambda: queue_depth(sqs, url) == 0, timeout=30, what="no wake-up queued or in flight")


# -- accepting a trigger ----------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["accept.after_store", "accept.after_arm", "accept.after_wake"])
def test_a_crashed_accept_retried_with_its_key_is_dispatched_once(
    api: Api, relay: LocalStack, sqs: Any, group: str, point: str
) -> None:
    """Loss path: the group was armed and the accept died before its wake-up; the client's retry
    was answered 202 but sent no wake-up, so this trigger and every later one for the group
    waited forever. The retry now always wakes the group."""
    key, start = str(uuid.uuid4()), schedule(3600)
    with crash_at(point):
        failed = api.trigger(group, 60, start, key=key, expect=500)
    assert failed.json()["error"]["code"]
    answer = api.trigger(group, 60, start, key=key).json()
    later = api.trigger(group, [profile(1000)], schedule(3600)).json()  # another one, same group
    for execution_id in (answer["execution_id"], later["execution_id"]):
        assert api.wait(execution_id, timeout=30)["status"] == "scheduled"
    _drained(relay, sqs)
    created = batches_for(relay, group, 201)
    phones = [p["person"]["phone_number"] for b in created for p in b.profiles]
    assert len(phones) == len(set(phones)) == 61  # every profile once, none twice


@pytest.mark.parametrize("point", ["accept.after_store", "accept.after_arm"])
def test_a_crashed_accept_never_retried_is_woken_by_the_reconciler(
    api: Api, relay: LocalStack, ddb: Any, group: str, point: str, reconciling: None
) -> None:
    """The client gave up after the 500: what was stored is dispatched anyway - the outbox entry
    written with the work is found overdue and the group woken."""
    with crash_at(point):
        api.trigger(group, 2, schedule(3600), expect=500)
    [execution] = [
        e
        for e in api.http.get("/v1/executions", params={"limit": 50}).json()["items"]
        if e["group_id"] == group
    ]
    assert api.wait(execution["execution_id"], timeout=40)["status"] == "scheduled"
    assert len(batches_for(relay, group, 201)) == 1


def test_a_crashed_reconciler_repairs_on_its_next_run(
    api: Api, relay: LocalStack, group: str, reconciling: None
) -> None:
    before = relay.failpoints_fired()["reconcile.before_wake"]
    with relay_env(RELAY_FAILPOINTS="accept.after_arm=raise;reconcile.before_wake=raise"):
        api.trigger(group, 1, schedule(3600), expect=500)
        wait_for(
            lambda: relay.failpoints_fired()["reconcile.before_wake"] > before,
            timeout=30,
            what="reconciler crash",
        )
    [execution] = [
        e
        for e in api.http.get("/v1/executions", params={"limit": 50}).json()["items"]
        if e["group_id"] == group
    ]
    assert api.wait(execution["execution_id"], timeout=40)["status"] == "scheduled"


# -- dispatching a group ----------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["dispatch.after_claim", "dispatch.after_send", "dispatch.after_links"])
def test_a_dispatcher_crashed_between_claim_and_record_ends_ambiguous_never_resent(
    api: Api, relay: LocalStack, sqs: Any, group: str, point: str, redelivery: None
) -> None:
    """Claimed, maybe sent, not recorded: the redelivered wake-up settles the chunk as ambiguous
    (the dispatcher cannot know whether the request reached the upstream) and sends it no more."""
    with crash_at(point):
        answer = api.trigger(group, 1, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=40)
    assert done["status"] == "partially_failed"
    [chunk] = done["chunk_details"]
    assert chunk["status"] == "ambiguous"
    assert "may have been sent" in chunk["error"]["message"]
    _drained(relay, sqs)
    sent = [b.status for b in batches_for(relay, group)]
    assert sent == ([] if point == "dispatch.after_claim" else [201])


@pytest.mark.parametrize(
    "point", ["dispatch.after_record", "dispatch.after_settle", "dispatch.before_rewake"]
)
def test_a_dispatcher_crashed_after_recording_completes_the_work(
    api: Api, relay: LocalStack, sqs: Any, group: str, point: str, redelivery: None
) -> None:
    """Recorded before the crash: the redelivered wake-up finds the rest (more than one window of
    batches here) and the group ends idle, each profile sent once."""
    # Every wait for the next window is a delayed wake-up (none is slept inline).
    with relay_env(DISPATCH_MAX_INLINE_WAIT_S="0"):
        with crash_at(point):
            answer = api.trigger(group, 200, schedule(3600)).json()  # 4 batches, 3 per window
        done = api.wait(answer["execution_id"], timeout=60)
    assert done["status"] == "scheduled"
    _drained(relay, sqs)
    phones = [p["person"]["phone_number"] for b in batches_for(relay, group, 201) for p in b.profiles]
    assert len(phones) == len(set(phones)) == 200


def test_an_unreadable_retry_after_loses_no_sibling_batch(
    api: Api, relay: LocalStack, sqs: Any, group: str
) -> None:
    """Loss path: a 429 whose Retry-After is neither a number nor a date raised out of the
    dispatcher, and the sibling batch that got a 201 was never recorded (no uuid, no links)."""
    relay.sandbox.fail_next(429, headers={"Retry-After": "in a while"})
    with relay_env(OPTIMIZED_RETRY_AFTER_DEFAULT_S="1"):  # such a 429 waits this long (60 s)
        answer = api.trigger(group, 100, schedule(3600)).json()  # two batches, sent side by side
        done = api.wait(answer["execution_id"], timeout=40)
    assert done["status"] == "scheduled"
    assert all(c["batch_uuid"] for c in done["chunk_details"])
    statuses = sorted(b.status for b in batches_for(relay, group))
    assert statuses == [201, 201, 429]


# -- retry budgets ----------------------------------------------------------------------------------


def test_an_outage_longer_than_the_old_attempt_count_is_ridden_out(
    api: Api, relay: LocalStack, sqs: Any, group: str
) -> None:
    """Loss path: five 5xx answers dead-lettered a chunk within ~30 s of an outage. Retries are
    now bounded by time (OPTIMIZED_RETRY_FOR_S, 6 h by default), not by a count."""
    relay.sandbox.fail_next(503, count=8)
    with relay_env(OPTIMIZED_MAX_ATTEMPTS="0", OPTIMIZED_RETRY_FOR_S="600"):
        answer = api.trigger(group, 1, schedule(3600)).json()
        done = api.wait(answer["execution_id"], timeout=60)
    assert done["status"] == "scheduled"
    [chunk] = done["chunk_details"]
    assert chunk["attempts"] == 9  # eight 5xx answers and the send that succeeded
    assert [b.status for b in batches_for(relay, group)] == [503] * 8 + [201]


def test_retries_end_when_their_time_is_spent(api: Api, relay: LocalStack, sqs: Any, group: str) -> None:
    relay.sandbox.fail_next(503, count=1000)
    with relay_env(OPTIMIZED_MAX_ATTEMPTS="0", OPTIMIZED_RETRY_FOR_S="1"):
        answer = api.trigger(group, 1, schedule(3600)).json()
        done = api.wait(answer["execution_id"], timeout=60)
    relay.sandbox.reset()
    assert done["status"] == "failed"
    [chunk] = done["chunk_details"]
    assert chunk["status"] == "dead_lettered"
    assert chunk["attempts"] >= 2


# -- cancelling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("point", ["cancel.after_mark", "cancel.after_chunk"])
def test_a_crashed_cancel_repeated_cancels_everything_once(
    api: Api, relay: LocalStack, group: str, point: str
) -> None:
    with relay.pollers.paused():  # nothing is dispatched meanwhile
        answer = api.trigger(group, 120, schedule(3600)).json()  # 3 chunks
        execution = f"/v1/executions/{answer['execution_id']}"
        with crash_at(point):
            assert api.http.delete(execution).status_code == 500
        again = api.http.delete(execution)
        assert again.status_code == 200, again.text
    done = again.json()
    assert done["status"] == "cancelled"
    assert (done["chunks"]["cancelled"], done["profiles"]["cancelled"]) == (3, 120)
    assert batches_for(relay, group) == []

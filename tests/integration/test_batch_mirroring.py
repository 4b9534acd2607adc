"""Optimized.app results mirrored onto Batch.com profiles over the local stack and the sandbox
Batch server (loopback, real httpx): each linked result becomes one event on the profile of its
input profile's custom id, an opt-out unsubscribes its channel, each result is mirrored once
whatever is repeated (the platform's retries, SQS redeliveries after a crash, a replay), results
arriving together are packed into calls of 200, and a result without a custom id is counted and
listed, not sent. No fixed sleeps."""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
import test_results_webhooks
from conftest import Api, crash_at, dlq_messages, queue_depth, relay_env, wait_for
from relay.core.store import codec
from relay.destinations.batch.mirror import execution_id_of
from relay_local.stack import LocalStack
from test_results_webhooks import RESULTS_SECRET, SECRET, Receiver, completed_execution, error, post, until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

receiver = test_results_webhooks.receiver  # the customer's endpoint on loopback (for the replay)


@pytest.fixture
def mirroring(relay: LocalStack) -> Iterator[dict[str, str]]:
    """Mirroring on (forwarding off: not what these tests look at)."""
    env = {"WEBHOOK_SECRET": SECRET, "BATCH_MIRROR_RESULTS": "true"}
    with relay_env(**env):
        yield env


@pytest.fixture
def fast_redelivery(relay: LocalStack) -> None:
    """A failed result message comes back after 2 s (the template's 540 s, compressed)."""
    relay.set_queue_attributes("ResultsQueue", VisibilityTimeout="2")


def now_iso(offset_s: float = 0) -> str:
    return datetime.fromtimestamp(time.time() + offset_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def batch_profile(relay: LocalStack, custom_id: str) -> dict[str, Any]:
    return relay.sandbox_batch.profiles.get(f"custom_id:{custom_id}") or {"attributes": {}, "events": []}


def events_of(relay: LocalStack) -> dict[str, list[str]]:
    """Event ids mirrored onto each Batch profile (custom id -> the results' event ids)."""
    return {
        key.removeprefix("custom_id:"): [e["attributes"]["event_id"] for e in profile["events"]]
        for key, profile in dict(relay.sandbox_batch.profiles).items()
    }


def mirrored_events(relay: LocalStack) -> int:
    return sum(len(ids) for ids in events_of(relay).values())


def wait_mirrored(relay: LocalStack, count: int, timeout: float = 60) -> dict[str, list[str]]:
    wait_for(lambda: mirrored_events(relay) >= count, timeout=timeout, what=f"{count} events on Batch")
    return events_of(relay)


def mirror_execution(api: Api, event_id: str, statuses: set[str]) -> dict[str, Any]:
    """The Batch execution mirroring a result, once it exists and has one of ``statuses``."""

    def current() -> dict[str, Any] | None:
        answer = api.http.get(f"/v1/executions/{execution_id_of(event_id)}")
        return answer.json() if answer.status_code == 200 and answer.json()["status"] in statuses else None

    return wait_for(current, what=f"the mirror execution of {event_id} {statuses}")


def settled(relay: LocalStack, sqs: Any) -> None:
    """Nothing left in flight on the results and Batch queues."""
    for name in ("ResultsQueue", "BatchQueue"):
        wait_for(lambda n=name: queue_depth(sqs, relay.resources.url(n)) == 0, what=f"{name} drained")


# -- what is mirrored -------------------------------------------------------------------------------


def test_results_become_events_on_the_batch_profiles_of_their_input_profiles(
    relay: LocalStack, api: Api, ddb: Any, sqs: Any, group: str, mirroring: dict[str, str]
) -> None:
    execution_id, sent = completed_execution(api, ddb, group, n=3)
    occurred = now_iso(-60)
    body = [
        {"id": "m-1", "type": "sms.delivered", "occurred_at": occurred, "profile": {"uuid": sent[0]["uuid"]}},
        {
            "id": "m-2",
            "type": "call.no_answer",
            "occurred_at": occurred,
            "profile": {"uuid": sent[1]["uuid"]},
        },
        {"id": "m-3", "type": "email.opened", "occurred_at": occurred, "profile": {"uuid": sent[2]["uuid"]}},
        {"id": "m-4", "type": "sms.reply", "phone": "+35840000000"},  # matches nothing: not mirrored
    ]
    assert post(relay, body).status_code == 202
    assert wait_mirrored(relay, 3) == {"ref-0": ["m-1"], "ref-1": ["m-2"], "ref-2": ["m-3"]}
    [event] = batch_profile(relay, "ref-0")["events"]
    assert event["name"] == "sms_delivered"
    assert event["time"] == occurred
    assert event["attributes"] | {} == {
        "result_type": "sms.delivered",
        "event_id": "m-1",
        "source_type": "sms.delivered",
        "execution_id": execution_id,
        "ref": "ref-0",
        "profile_index": 0,
        "profile_uuid": sent[0]["uuid"],
        "occurred_at": occurred,
        **{k: event["attributes"][k] for k in ("batch_uuid", "schedule_uuid") if k in event["attributes"]},
    }
    assert [e["name"] for e in batch_profile(relay, "ref-1")["events"]] == ["call_no_answer"]
    assert [e["name"] for e in batch_profile(relay, "ref-2")["events"]] == ["email_opened"]
    # Each result says where it went; its mirror execution says it was delivered.
    listed = {
        r["event_id"]: r for r in api.http.get(f"/v1/executions/{execution_id}/results").json()["items"]
    }
    assert listed["m-1"]["mirrors"] == [
        {
            "destination": "batch",
            "status": "mirrored",
            "profile": "ref-0",
            "execution_id": execution_id_of("m-1"),
            "reason": None,
        }
    ]
    mirror = mirror_execution(api, "m-1", {"completed"})
    assert mirror["destination"] == "batch"
    assert mirror["operations"]["delivered"] == 1
    unmatched = api.http.get("/v1/results", params={"unmatched": "true"}).json()["items"]
    assert [(r["event_id"], r["mirrors"]) for r in unmatched] == [("m-4", [])]
    settled(relay, sqs)
    assert mirrored_events(relay) == 3


def test_an_opt_out_unsubscribes_the_batch_profile_from_its_channel(
    relay: LocalStack, api: Api, ddb: Any, sqs: Any, group: str, mirroring: dict[str, str]
) -> None:
    _, sent = completed_execution(api, ddb, group, n=2)
    body = [
        {
            "id": "o-1",
            "type": "profile.opted_out",
            "phone": "+358401234567",
            "profile": {"uuid": sent[0]["uuid"]},
        },
        {
            "id": "o-2",
            "type": "unsubscribe",
            "email": "jane@example.com",
            "profile": {"uuid": sent[1]["uuid"]},
        },
    ]
    assert post(relay, body).status_code == 202
    wait_mirrored(relay, 2)
    sms, email = batch_profile(relay, "ref-0"), batch_profile(relay, "ref-1")
    assert sms["attributes"] == {"$sms_marketing": "unsubscribed"}
    assert email["attributes"] == {"$email_marketing": "unsubscribed"}
    assert [e["name"] for e in sms["events"] + email["events"]] == ["opted_out", "opted_out"]


def test_a_result_without_a_custom_id_is_counted_and_listed_not_sent(
    relay: LocalStack, api: Api, ddb: Any, sqs: Any, group: str, mirroring: dict[str, str]
) -> None:
    """The custom id comes from an attribute of the input profile: one profile has it, the other
    not. Its result is stored with the reason, counted on the execution and listed."""
    with relay_env(BATCH_CUSTOM_ID_FROM="attribute:crm_id"):
        people = [
            {
                "person": {"phone_number": "+358400000001"},
                "ref": "r-a",
                "attributes": [{"name": "crm_id", "value": 4242}],
            },
            {"person": {"phone_number": "+358400000002"}, "ref": "r-b"},
        ]
        execution_id = api.trigger(group, people).json()["execution_id"]
        api.wait(execution_id)
        with_id, without = completed_links(ddb, execution_id)
        body = [
            {"id": "s-1", "type": "sms.delivered", "profile": {"uuid": with_id}},
            {"id": "s-2", "type": "sms.delivered", "profile": {"uuid": without}},
        ]
        assert post(relay, body).status_code == 202
        assert wait_mirrored(relay, 1) == {"4242": ["s-1"]}
        skipped = until(
            lambda: api.http.get("/v1/results", params={"mirror": "skipped"}).json()["items"],
            lambda items: len(items) == 1,
            "the skipped result listed",
        )
    assert skipped[0]["event_id"] == "s-2"
    assert skipped[0]["ref"] == "r-b"
    assert skipped[0]["mirrors"] == [
        {
            "destination": "batch",
            "status": "skipped",
            "profile": None,
            "execution_id": None,
            "reason": "the input profile has no attribute 'crm_id' (BATCH_CUSTOM_ID_FROM=attribute:crm_id)",
        }
    ]
    counts = api.execution(execution_id)["results"]
    assert (counts["delivered"], counts["mirror_skipped"]) == (2, 1)
    settled(relay, sqs)
    assert mirrored_events(relay) == 1


def test_a_partial_error_on_a_mirrored_result_is_shown_on_its_mirror_execution(
    relay: LocalStack, api: Api, ddb: Any, sqs: Any, group: str, mirroring: dict[str, str]
) -> None:
    """An event name the relay lets through (a looser pattern configured) and Batch refuses: the
    call succeeds with a partial error, mapped back to the result's event id on its execution;
    the other result of the same call is delivered."""
    loose = {
        "BATCH_EVENT_NAME_PATTERN": r"^[A-Za-z0-9_]{1,30}$",
        "BATCH_EVENT_NAMES": '{"sms.failed": "SMS_Failed"}',
    }
    with relay_env(**loose):
        _, sent = completed_execution(api, ddb, group, n=2)
        body = [
            {"id": "pe-1", "type": "sms.failed", "profile": {"uuid": sent[0]["uuid"]}},
            {"id": "pe-2", "type": "sms.delivered", "profile": {"uuid": sent[1]["uuid"]}},
        ]
        assert post(relay, body).status_code == 202
        refused = mirror_execution(api, "pe-1", {"failed", "completed"})
        delivered = mirror_execution(api, "pe-2", {"completed"})
    assert refused["status"] == "failed"
    [failure] = refused["errors"]
    assert (failure["index"], failure["ref"], failure["category"]) == (0, "pe-1", "events")
    assert "SMS_Failed" in failure["reason"]
    assert delivered["operations"]["delivered"] == 1
    assert events_of(relay) == {"ref-1": ["pe-2"]}


def completed_links(ddb: Any, execution_id: str) -> list[str]:
    """The upstream profile uuids of an execution's profiles in input order, once linked."""
    from conftest import chunk_items

    sent = [p for c in chunk_items(ddb, execution_id) for p in json.loads(c["upstream_profiles_json"])]
    wait_for(
        lambda: ddb.get_item(
            TableName="LinksTable", Key={"pk": {"S": f"LINK#profile#{sent[-1]['uuid']}"}, "sk": {"S": "LINK"}}
        ).get("Item"),
        what="result links",
    )
    return [p["uuid"] for p in sorted(sent, key=lambda p: p["index"])]


def test_the_results_listing_filters_are_checked(relay: LocalStack, api: Api) -> None:
    error(api.http.get("/v1/results"), 400, "unsupported_filter")
    error(
        api.http.get("/v1/results", params={"unmatched": "true", "mirror": "skipped"}),
        400,
        "unsupported_filter",
    )
    error(
        api.http.get("/v1/results", params={"mirror": "skipped", "next_token": "bm90IGEgdG9rZW4"}),
        400,
        "invalid_token",
    )
    assert api.http.get("/v1/results", params={"mirror": "mirrored"}).status_code == 422
    assert api.http.get("/v1/results", params={"mirror": "skipped"}).json() == {
        "items": [],
        "next_token": None,
    }


# -- once -------------------------------------------------------------------------------------------


def test_each_result_is_mirrored_once_whatever_is_repeated(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    group: str,
    mirroring: dict[str, str],
    receiver: Receiver,
) -> None:
    """The platform retries the body, then sends it again under another webhook-id; an operator
    replays the window to the customer's endpoint: Batch still has one event per result."""
    _, sent = completed_execution(api, ddb, group, n=2)
    body = [
        {"id": f"d-{i}", "type": "sms.delivered", "profile": {"uuid": p["uuid"]}} for i, p in enumerate(sent)
    ]
    assert post(relay, body, msg_id="msg_once").status_code == 202
    assert post(relay, body, msg_id="msg_once").json()["duplicates"] == 2
    assert post(relay, body).json()["duplicates"] == 2
    wait_mirrored(relay, 2)
    settled(relay, sqs)
    with relay_env(RESULTS_WEBHOOK_URL=receiver.url, RESULTS_WEBHOOK_SECRET=RESULTS_SECRET):
        replay = api.http.post("/v1/results/replay", json={"since": now_iso(-600)})
        assert replay.status_code == 202, replay.text
        assert replay.json()["queued"] == 2
        wait_for(lambda: len(receiver.received) == 2, what="the replayed results forwarded")
        settled(relay, sqs)
    assert events_of(relay) == {"ref-0": ["d-0"], "ref-1": ["d-1"]}
    assert sum(c.operations for c in relay.sandbox_batch.profile_calls()) == 2


@pytest.mark.parametrize(
    ("failpoint", "action"),
    [("deliver.after_count", "raise"), ("deliver.after_mirror", "raise"), ("deliver.after_mirror", "exit")],
)
def test_a_crash_between_recording_and_mirroring_still_mirrors_each_result_once(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    group: str,
    mirroring: dict[str, str],
    fast_redelivery: None,
    failpoint: str,
    action: str,
) -> None:
    """Recorded, then the deliver worker dies before handing the result to Batch (after_count)
    or right after (after_mirror): SQS redelivers the message, which finds its own record and
    hands it over (again: a no-op, the mirror execution exists). One event each, nothing parked."""
    execution_id, sent = completed_execution(api, ddb, group, n=2)
    body = [
        {"id": f"c-{i}", "type": "sms.failed", "profile": {"uuid": p["uuid"]}} for i, p in enumerate(sent)
    ]
    with crash_at(failpoint, action):
        assert post(relay, body).status_code == 202
    assert wait_mirrored(relay, 2) == {"ref-0": ["c-0"], "ref-1": ["c-1"]}
    settled(relay, sqs)
    assert mirrored_events(relay) == 2
    assert api.execution(execution_id)["results"]["failed"] == 2  # counted once each
    for i in range(2):
        assert api.execution(execution_id_of(f"c-{i}"))["status"] == "completed"
    assert dlq_messages(sqs, relay.resources.url("ResultsDeadLetterQueue")) == []


# -- packing ----------------------------------------------------------------------------------------


def seed_links(ddb: Any, execution_id: str, n: int) -> list[str]:
    """Links of ``n`` profiles of an execution (as its dispatcher would have written them)."""
    uuids = [str(uuid.uuid4()) for _ in range(n)]
    items = [
        codec.dump(
            {
                "pk": f"LINK#profile#{u}",
                "sk": "LINK",
                "execution_id": execution_id,
                "chunk_seq": 0,
                "profile_index": i,
                "ref": f"pack-{i}",
                "profile_uuid": u,
            }
        )
        for i, u in enumerate(uuids)
    ]
    for start in range(0, n, 25):
        ddb.batch_write_item(
            RequestItems={"LinksTable": [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )
    return uuids


@contextmanager
def batch_dispatch_held(relay: LocalStack) -> Iterator[None]:
    """The Batch queue's consumer paused: operations accepted meanwhile wait, all together, for
    the dispatcher woken when it resumes (whatever the emulator's speed)."""
    [poller] = [p for p in relay.pollers.pollers if p.queue_url == relay.resources.url("BatchQueue")]
    poller.pause()
    try:
        yield
    finally:
        poller.resume()


def test_results_arriving_together_are_packed_into_calls_of_200(
    relay: LocalStack, api: Api, ddb: Any, sqs: Any, group: str, mirroring: dict[str, str]
) -> None:
    """450 results recorded while the Batch dispatcher is held: their operations go to Batch as
    ceil(450 / 200) = 3 calls, within the updates limiter (no 429)."""
    n = 450
    execution_id = api.trigger(group, 1).json()["execution_id"]
    api.wait(execution_id)
    uuids = seed_links(ddb, execution_id, n)
    body = [{"id": f"k-{i}", "type": "call.completed", "profile": {"uuid": u}} for i, u in enumerate(uuids)]
    with batch_dispatch_held(relay):
        assert post(relay, body).status_code == 202
        wait_for(
            lambda: queue_depth(sqs, relay.resources.url("ResultsQueue")) == 0, timeout=100, what="recorded"
        )
        assert relay.sandbox_batch.profile_calls(status=None) == []
    wait_mirrored(relay, n, timeout=60)
    calls = relay.sandbox_batch.profile_calls(status=None)
    assert sorted(c.operations for c in calls) == [50, 200, 200]
    assert len(calls) == math.ceil(n / 200)
    assert relay.sandbox_batch.rate_limited == 0
    assert api.execution(execution_id)["results"]["answered"] == n

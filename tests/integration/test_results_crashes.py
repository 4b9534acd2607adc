"""The results path crashed at every failpoint between two of its side effects, then recovered as
AWS would recover it: the platform retries a webhook that got a 5xx, SQS redelivers a message
whose invocation failed (the ResultsQueue's visibility compressed to 2 s), the reconciler queues
what was stored and never queued (``RELAY_RECONCILE_AFTER_S=1``). Each time every result is
stored once, counted once on its execution and forwarded at least once - more than once only
under the same ``webhook-id``, so the receiver can de-duplicate. Poison events are stored as
``unknown`` and acknowledged; the rest of their body goes through. No fixed sleeps."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import pytest
import test_results_webhooks
from conftest import Api, crash_at, dlq_messages, queue_depth, relay_env, scan_all, wait_for
from relay.core.store import codec
from relay_local.stack import LocalStack
from test_results_webhooks import Receiver, completed_execution, post, results_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

# The customer's endpoint on loopback and the results settings, as test_results_webhooks has them.
receiver = test_results_webhooks.receiver
results_env = test_results_webhooks.results_env

NO_COUNTS = dict.fromkeys(
    [
        "delivered",
        "failed",
        "opened",
        "answered",
        "no_answer",
        "replied",
        "opted_out",
        "unknown",
        "mirror_skipped",
    ],
    0,
)


@pytest.fixture
def fast_redelivery(relay: LocalStack) -> None:
    """A failed result message comes back after 2 s (the template's 540 s, compressed)."""
    relay.set_queue_attributes("ResultsQueue", VisibilityTimeout="2")


def body_for(sent: list[dict[str, Any]], tag: str) -> list[dict[str, Any]]:
    """Three events: two for profiles of the execution, one that matches nothing."""
    p0, p1 = sent
    return [
        {"id": f"{tag}-1", "type": "sms.delivered", "profile": {"uuid": p0["uuid"]}},
        {"id": f"{tag}-2", "event": "call.no_answer", "data": {"profile_uuid": p1["uuid"]}},
        {"id": f"{tag}-3", "type": "sms.reply", "phone": "+35840000000"},
    ]


def result_items(ddb: Any) -> dict[str, list[dict[str, Any]]]:
    """Stored results by event id (every partition: executions and unmatched)."""
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for raw in scan_all(ddb):
        if raw["sk"]["S"].startswith("RESULT#"):
            item = codec.load(raw)
            found[item["event_id"]].append(item)
    return found


def forwards(receiver: Receiver) -> dict[str, list[str]]:
    """webhook-ids of the forwarded requests, by event id."""
    out: dict[str, list[str]] = defaultdict(list)
    for request in receiver.received:
        out[request.json["data"]["event_id"]].append(request.headers["webhook-id"])
    return out


def assert_each_result_once(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    receiver: Receiver,
    event_ids: list[str],
    execution_id: str | None = None,
    counts: dict[str, int] | None = None,
) -> None:
    """Every event stored once, counted once, forwarded (duplicates share one webhook-id), and
    nothing left in flight or dead-lettered."""
    wait_for(lambda: set(event_ids) <= set(forwards(receiver)), what=f"{event_ids} forwarded", timeout=60)
    wait_for(lambda: queue_depth(sqs, relay.resources.url("ResultsQueue")) == 0, what="results queue drained")
    stored = result_items(ddb)
    assert {e: len(stored[e]) for e in event_ids} == dict.fromkeys(event_ids, 1)
    for event_id, ids in forwards(receiver).items():
        assert len(set(ids)) == 1, f"{event_id} forwarded under several webhook-ids: {ids}"
    if execution_id is not None:
        assert results_of(api, execution_id) == NO_COUNTS | (counts or {})
    assert dlq_messages(sqs, relay.resources.url("ResultsDeadLetterQueue")) == []


# -- webhook ingest: mark -> queue -> answer ---------------------------------------------------------


@pytest.mark.parametrize(
    ("failpoint", "action"),
    [("webhook.after_mark", "raise"), ("webhook.after_queue", "raise"), ("webhook.after_mark", "exit")],
)
def test_a_crash_in_webhook_ingest_is_completed_by_the_platforms_retry(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    group: str,
    receiver: Receiver,
    results_env: dict[str, str],
    failpoint: str,
    action: str,
) -> None:
    execution_id, sent = completed_execution(api, ddb, group)
    body = body_for(sent, "w")
    with crash_at(failpoint, action):  # raise: a 500; exit: the instance dies, a 5xx all the same
        assert post(relay, body, msg_id="msg_crash").status_code >= 500
    retry = post(relay, body, msg_id="msg_crash")  # the platform's retry of the 5xx, same webhook-id
    assert retry.status_code == 202, retry.text
    assert retry.json()["event_ids"] == ["w-1", "w-2", "w-3"]
    assert_each_result_once(
        relay, api, ddb, sqs, receiver, ["w-1", "w-2", "w-3"], execution_id, {"delivered": 1, "no_answer": 1}
    )


@pytest.mark.parametrize("reconciler_crash", [None, "results.reconcile.after_queue"])
def test_results_stored_but_never_queued_are_queued_by_the_reconciler(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    group: str,
    receiver: Receiver,
    results_env: dict[str, str],
    reconciler_crash: str | None,
) -> None:
    """The platform gives up after the 5xx (or a Lambda timeout in the middle of a big body, as
    the crash stands for): the reconciler finds the events stored and not queued, queues them -
    and when it crashes itself right after queueing, its next run queues them again, harmlessly."""
    execution_id, sent = completed_execution(api, ddb, group)
    with crash_at("webhook.after_mark"):
        assert post(relay, body_for(sent, "r")).status_code == 500
    with relay_env(RELAY_RECONCILE_AFTER_S="1"):
        if reconciler_crash:
            with crash_at(reconciler_crash):
                pass
        assert_each_result_once(
            relay,
            api,
            ddb,
            sqs,
            receiver,
            ["r-1", "r-2", "r-3"],
            execution_id,
            {"delivered": 1, "no_answer": 1},
        )
        # Nothing is left for the reconciler: a later run repairs nothing.
        runs = relay.schedules.runs
        wait_for(lambda: relay.schedules.runs >= runs + 2, what="two more reconciler runs")
        assert len(receiver.received) == 3  # the copies a re-run queued were dropped, not forwarded


# -- deliver: link -> record and count -> forward ---------------------------------------------------


@pytest.mark.parametrize(
    ("failpoint", "action"),
    [
        ("deliver.after_link", "raise"),
        ("deliver.after_count", "raise"),
        ("deliver.before_forward", "raise"),
        ("deliver.after_forward", "raise"),
        ("deliver.after_retry_queued", "raise"),
        ("deliver.after_count", "exit"),  # the instance killed: its whole batch comes back
    ],
)
def test_a_crash_in_deliver_is_completed_by_sqs_redelivery(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    group: str,
    receiver: Receiver,
    results_env: dict[str, str],
    fast_redelivery: None,
    failpoint: str,
    action: str,
) -> None:
    execution_id, sent = completed_execution(api, ddb, group)
    if failpoint == "deliver.after_retry_queued":
        receiver.script = [(500, {})]  # the first forward fails, so a retry is queued
    with crash_at(failpoint, action):
        assert post(relay, body_for(sent, "d")[:1]).status_code == 202
    assert_each_result_once(relay, api, ddb, sqs, receiver, ["d-1"], execution_id, {"delivered": 1})


def test_a_result_redelivered_after_its_link_appeared_is_still_stored_and_counted_once(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    group: str,
    receiver: Receiver,
    results_env: dict[str, str],
    fast_redelivery: None,
) -> None:
    """The first delivery finds no link (written late, or not yet visible to its eventually
    consistent read) and records the result unmatched; it crashes before forwarding; by the
    redelivery the link is there. The result is still recorded once - not a second time under
    the execution, counted there - because recording is conditional on the event id alone."""
    execution_id, _ = completed_execution(api, ddb, group)
    with crash_at("deliver.after_count"):
        late = {"id": "late-1", "type": "sms.delivered", "profile": {"uuid": "late-uuid"}}
        assert post(relay, late).status_code == 202
    link = {"execution_id": execution_id, "chunk_seq": 0, "profile_index": 0, "ref": "ref-0"}
    ddb.put_item(
        TableName="LinksTable",
        Item=codec.dump({"pk": "LINK#profile#late-uuid", "sk": "LINK", "profile_uuid": "late-uuid", **link}),
    )
    assert_each_result_once(relay, api, ddb, sqs, receiver, ["late-1"], execution_id, {})
    [stored] = result_items(ddb)["late-1"]
    assert stored["pk"] == "RESULTS#UNMATCHED"
    [forwarded] = receiver.received
    assert forwarded.json["data"]["matched"] is False  # what was stored is what is forwarded


# -- poison ------------------------------------------------------------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": True}
    for _ in range(levels):
        value = {"a": value}
    return value


POISON = {
    "year_one": {"id": "p-poison", "type": "sms.delivered", "occurred_at": "0001-01-01T00:00:00+01:00"},
    "nested_300_deep": {"id": "p-poison", "type": "sms.delivered", "extra": _deep(300)},
}


@pytest.mark.parametrize("poison", list(POISON))
def test_a_poison_event_is_stored_as_it_came_and_the_rest_of_its_body_goes_through(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    group: str,
    receiver: Receiver,
    results_env: dict[str, str],
    poison: str,
) -> None:
    execution_id, sent = completed_execution(api, ddb, group)
    good = body_for(sent, "p")[:2]
    answer = post(relay, [good[0], POISON[poison], good[1]])
    assert answer.status_code == 202, answer.text
    assert answer.json()["event_ids"] == ["p-1", "p-poison", "p-2"]
    assert_each_result_once(
        relay,
        api,
        ddb,
        sqs,
        receiver,
        ["p-1", "p-poison", "p-2"],
        execution_id,
        {"delivered": 1, "no_answer": 1},
    )
    unmatched = api.http.get("/v1/results", params={"unmatched": "true"}).json()["items"]
    [kept] = [r for r in unmatched if r["event_id"] == "p-poison"]
    raw = kept["raw"] if isinstance(kept["raw"], dict) else json.loads(kept["raw"])
    assert raw == POISON[poison]  # kept exactly as it came (as JSON text when it cannot be a value)
    # The platform's retry of the same body changes nothing.
    again = post(relay, [good[0], POISON[poison], good[1]])
    assert (again.status_code, again.json()["duplicates"]) == (202, 3)


def test_a_big_body_crashed_after_its_marks_is_completed_by_the_retry_each_event_once(
    relay: LocalStack,
    api: Api,
    ddb: Any,
    sqs: Any,
    receiver: Receiver,
    results_env: dict[str, str],
) -> None:
    """250 events (three transactions of marks, queued from several threads): the first attempt
    stores them and crashes (as a Lambda timeout part-way through a big body would), the retry
    queues the stored ones, a second retry finds them all recorded."""
    body = [{"id": f"b-{i}", "type": "sms.delivered", "phone": f"+3584{i:08d}"} for i in range(250)]
    with crash_at("webhook.after_mark"):
        assert post(relay, body, msg_id="msg_big").status_code == 500
    assert post(relay, body, msg_id="msg_big").status_code == 202
    ids = [e["id"] for e in body]
    assert_each_result_once(relay, api, ddb, sqs, receiver, ids)
    assert sum(len(v) for v in forwards(receiver).values()) == 250  # no copy forwarded
    again = post(relay, body, msg_id="msg_big").json()
    assert (again["accepted"], again["duplicates"]) == (0, 250)

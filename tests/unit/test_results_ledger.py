"""The results ledger in-process (moto, no network): events stored with their mark before they
are queued, recorded and counted once per event id whichever message gets there, found by the
reconciler when nothing recorded them, dead-lettered after repeated re-queues; poison events
quarantined; the deliver function's timeout sized to its batch."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from relay.core.queue import Queue
from relay.core.store import keys
from relay.core.store.table import Table
from relay.results import ingest, reconcile, store
from relay.results.adapters.optimized import normalise
from relay.results.deliver import DeliverDeps, handle_message
from relay.results.messages import INLINE_EVENT_BYTES, record_message
from relay.results.settings import ResultsSettings

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0
TTL = 7 * 86_400


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Table, Queue, Any]]:
    # In-process moto is not safe for transactions side by side (the local stack's moto server
    # serialises them): one transaction at a time here.
    monkeypatch.setattr(store, "MARK_WORKERS", 1)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        attrs = ["pk", "sk", "gsi2pk", "gsi2sk"]
        ddb.create_table(
            TableName="relay",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attrs],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": keys.WAITING_INDEX,
                    "KeySchema": [
                        {"AttributeName": "gsi2pk", "KeyType": "HASH"},
                        {"AttributeName": "gsi2sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="results")["QueueUrl"]
        dlq = sqs.create_queue(QueueName="results-dlq")["QueueUrl"]
        yield Table(ddb, "relay"), Queue(sqs, url, dlq), sqs


def event(i: int | str, **extra: Any) -> dict[str, Any]:
    return normalise({"id": f"e-{i}", "type": "sms.delivered", **extra}).model_dump(mode="json")


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        out += [json.loads(m["Body"]) for m in batch]
        for m in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return out


def deliver_deps(table: Table, queue: Queue) -> DeliverDeps:
    return DeliverDeps(table, queue, ResultsSettings(), endpoint=None, clock=lambda: NOW, links=table)


def record(table: Table, queue: Queue, e: dict[str, Any]) -> str:
    """The deliver worker's handling of the event's first message (forwarding off)."""
    return handle_message(
        record_message("optimized", e["event_id"], event=e, received_at="r"), deliver_deps(table, queue)
    )


def repairs(requeued: int, dead_lettered: int) -> dict[str, int]:
    return {"ResultsRequeued": requeued, "ResultsDeadLettered": dead_lettered}


# -- marking ----------------------------------------------------------------------------------------


def test_a_big_body_is_marked_in_transactions_and_a_retry_tells_new_waiting_and_recorded_apart(
    aws: tuple[Table, Queue, Any],
) -> None:
    table, queue, _ = aws
    first = [event(i) for i in range(250)]  # three transactions
    marked = store.mark_events(table, "optimized", first, NOW, TTL)
    assert [e["event_id"] for e in marked.fresh] == [e["event_id"] for e in first]
    item = store.get_mark(table, "optimized", "e-7")
    assert item is not None
    assert json.loads(item["event_json"]) == first[7]
    assert item["gsi2pk"].startswith("RESULTS#UNRECORDED#optimized#")
    # 100 of them are recorded by the deliver worker, the rest still wait.
    for e in first[:100]:
        record(table, queue, e)

    again = store.mark_events(table, "optimized", [*first, event("new")], NOW + 5, TTL)
    assert [e["event_id"] for e in again.fresh] == ["e-new"]
    assert sorted(e["event_id"] for e, _ in again.waiting) == sorted(e["event_id"] for e in first[100:])
    assert {received for _, received in again.waiting} == {"2027-01-15T08:00:00.000Z"}  # the first's
    assert sorted(again.duplicates) == sorted(e["event_id"] for e in first[:100])


def test_an_expired_mark_is_a_new_event(aws: tuple[Table, Queue, Any]) -> None:
    table, _, _ = aws
    store.mark_events(table, "optimized", [event(1)], NOW, 60)
    assert store.mark_events(table, "optimized", [event(1)], NOW + 61, 60).fresh == [event(1)]


# -- recording once ---------------------------------------------------------------------------------


def test_a_result_is_counted_once_whichever_message_records_it(aws: tuple[Table, Queue, Any]) -> None:
    table, queue, _ = aws
    table.put({**keys.execution("x1"), "status": "completed"})
    table.put({**keys.profile_link("p-1"), "execution_id": "x1", "chunk_seq": 0, "profile_index": 0})
    e = event(1, profile={"uuid": "p-1"})
    store.mark_events(table, "optimized", [e], NOW, TTL)
    first = record_message("optimized", "e-1", event=e, received_at="2027-01-15T08:00:00.000Z")
    copy = record_message("optimized", "e-1")  # a copy queued by a retry or the reconciler
    deps = deliver_deps(table, queue)
    deps.endpoint = mock.Mock(url="https://customer.example")
    with mock.patch("relay.results.deliver.forward", return_value="forwarded") as forward:
        assert handle_message(first, deps) == "forwarded"
        assert handle_message(copy, deps) == "recorded by another message, which forwards it"
        assert handle_message(first, deps) == "forwarded"  # its SQS redelivery (a crash after count)
    assert forward.call_count == 2
    assert forward.call_args_list[0].args[0] == forward.call_args_list[1].args[0]  # the stored view
    execution = table.get(keys.execution("x1"))
    assert execution is not None
    assert execution["results_delivered"] == 1
    mark = store.get_mark(table, "optimized", "e-1")
    assert mark is not None
    assert (mark["recorded_by"], "event_json" in mark, "gsi2pk" in mark) == (first["token"], False, False)


def test_a_forward_that_would_not_fit_the_time_left_is_queued_instead(aws: tuple[Table, Queue, Any]) -> None:
    table, queue, sqs = aws
    deps = deliver_deps(table, queue)
    deps.endpoint = mock.Mock(url="https://customer.example")
    deps.remaining_ms = lambda: 5_000  # less than 3 s connect + 10 s read + the margin
    view = {"event_id": "e-9", "type": "sms.delivered", "raw": None}
    with mock.patch.object(store, "forwarding_disabled", return_value=False):
        outcome = handle_message({"kind": "forward", "result": view, "attempt": 2}, deps)
    assert outcome.startswith("forward deferred")
    deps.endpoint.post.assert_not_called()
    assert drain(sqs, queue.url) == [{"kind": "forward", "result": view, "attempt": 2}]


def test_a_large_result_is_retried_by_reference_to_where_it_is_stored(aws: tuple[Table, Queue, Any]) -> None:
    from relay.results.endpoint import Delivered, RetryLater

    table, queue, sqs = aws
    big = ingest.adapt({"id": "big", "x": _deep(200), "pad": "y" * 100_000})  # quarantined, ~100 KB
    store.mark_events(table, "optimized", [big], NOW, TTL)
    deps = deliver_deps(table, queue)
    deps.settings = ResultsSettings(results_retry_base_s=0)  # the retry is visible at once
    deps.endpoint = mock.Mock(url="https://customer.example")
    deps.endpoint.post.side_effect = [RetryLater(503, "HTTP 503"), Delivered(200)]
    with mock.patch.object(store, "forwarding_disabled", return_value=False):
        assert handle_message(record_message("optimized", "big"), deps).startswith("retry in")
        [retry] = drain(sqs, queue.url)
        assert retry["result_key"]["pk"] == keys.RESULTS_UNMATCHED_PARTITION
        assert len(json.dumps(retry)) < 1_000
        assert handle_message(retry, deps) == "forwarded"
    first, second = (c.args for c in deps.endpoint.post.call_args_list)
    assert first == second  # the same webhook-id and body, read back from the store
    assert json.loads(second[1])["data"]["raw"] == big["raw"]


def test_a_result_of_an_expired_execution_is_kept_unmatched(aws: tuple[Table, Queue, Any]) -> None:
    table, queue, _ = aws
    table.put({**keys.profile_link("p-2"), "execution_id": "gone", "chunk_seq": 0, "profile_index": 0})
    e = event(2, profile={"uuid": "p-2"})
    store.mark_events(table, "optimized", [e], NOW, TTL)
    record(table, queue, e)
    [kept], _ = store.page(table, keys.RESULTS_UNMATCHED_PARTITION, type_=None, limit=10, start=None)
    assert (kept["event_id"], kept["matched"]) == ("e-2", False)


def test_a_large_event_travels_in_the_ledger_not_in_its_message() -> None:
    small, large = event(1), event(2, padding="x" * INLINE_EVENT_BYTES)
    assert record_message("optimized", "e-1", event=small, received_at="r")["event"] == small
    assert "event" not in record_message("optimized", "e-2", event=large, received_at="r")


# -- the reconciler ---------------------------------------------------------------------------------


def test_the_reconciler_queues_what_nothing_recorded_then_dead_letters_it(
    aws: tuple[Table, Queue, Any],
) -> None:
    table, queue, sqs = aws
    store.mark_events(table, "optimized", [event(1), event(2)], NOW, TTL)
    store.mark_events(table, "optimized", [event(3)], NOW + 100, TTL)  # not stale yet
    record(table, queue, event(2))
    emit = mock.Mock()
    with (
        mock.patch.object(reconcile.core_wiring, "table", return_value=table),
        mock.patch.object(reconcile.wiring, "queue", return_value=queue),
    ):
        assert reconcile.reconcile(NOW + 60, NOW + 50, emit) == repairs(1, 0)
        [message] = drain(sqs, queue.url)
        assert (message["kind"], message["event_id"], "event" not in message) == ("record", "e-1", True)
        # Re-queued: stale again only one period after the re-queue.
        assert reconcile.reconcile(NOW + 100, NOW + 50, emit) == {}
        for n in range(reconcile.MAX_REQUEUES - 1):
            at = NOW + 1000 * (n + 2)
            assert reconcile.reconcile(at, at - 1, emit)["ResultsRequeued"] == 2  # e-1 and e-3
        at = NOW + 1000 * (reconcile.MAX_REQUEUES + 1)
        assert reconcile.reconcile(at, at - 1, emit) == repairs(1, 1)
        assert reconcile.reconcile(at + 1000, at + 999, emit) == repairs(0, 1)
        assert reconcile.reconcile(at + 2000, at + 1999, emit) == {}
    dead = drain(sqs, queue.dead_letter_url)
    assert sorted(d["event_id"] for d in dead) == ["e-1", "e-3"]
    assert "never recorded" in dead[0]["reason"]
    # A re-drive records it: the event is still on its ledger item.
    messages = drain(sqs, queue.url)
    handle_message({k: v for k, v in dead[0].items() if k != "reason"}, deliver_deps(table, queue))
    assert store.get_mark(table, "optimized", dead[0]["event_id"])["recorded_at"] == NOW  # type: ignore[index]
    assert all(m["kind"] == "record" for m in messages)


# -- poison -----------------------------------------------------------------------------------------


def _deep(levels: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_timestamp_before_year_one_in_utc_is_kept_as_text() -> None:
    assert normalise({"occurred_at": "0001-01-01T00:00:00+01:00"}).occurred_at == "0001-01-01T00:00:00+01:00"


@pytest.mark.parametrize(
    ("raw", "expected_id"),
    [
        ({"id": "deep-1", "type": "sms.delivered", "x": _deep(300)}, "deep-1"),
        ({"type": "sms.delivered", "x": _deep(300)}, None),  # no id of its own: a content hash
    ],
)
def test_an_event_that_cannot_be_normalised_is_quarantined_as_it_came(
    raw: dict[str, Any], expected_id: str | None
) -> None:
    kept = ingest.adapt(raw)
    assert kept["type"] == "unknown"
    assert json.loads(kept["raw"]) == raw
    assert kept["event_id"] == expected_id or kept["event_id"].startswith("sha256:")
    assert ingest.adapt(raw)["event_id"] == kept["event_id"]  # a retry is the same event


def test_nesting_depth_is_measured_without_recursion() -> None:
    assert [ingest.nesting(v) for v in (1, {}, [], {"a": [1, {"b": 2}]}, _deep(5000))] == [0, 1, 1, 3, 5001]
    kept = ingest.adapt({"id": "d", "x": _deep(ingest.MAX_DEPTH)})
    assert kept["type"] == "unknown"
    assert ingest.adapt({"id": "d", "type": "sms.delivered", "x": _deep(100)})["type"] == "sms.delivered"


@pytest.mark.parametrize("padding", ["x", '"', "\u00e4"])  # escapes make the stored text longer
def test_an_event_too_large_for_one_item_is_quarantined_cut_to_fit(padding: str) -> None:
    raw = {"id": "big", "type": "sms.delivered", "pad": padding * ingest.MAX_EVENT_BYTES}
    kept = ingest.adapt(raw)
    assert (kept["event_id"], kept["type"]) == ("big", "unknown")
    assert json.dumps(raw, separators=(",", ":"), ensure_ascii=False).startswith(kept["raw"])
    assert ingest.MAX_EVENT_BYTES / 7 < len(json.dumps(kept)) <= ingest.MAX_EVENT_BYTES


# -- sizing (issue 8) -------------------------------------------------------------------------------


def test_the_deliver_timeout_fits_a_batch_of_forwards_and_the_queue_visibility_is_six_times_it() -> None:
    from relay_local.template import load_template

    template = load_template(REPO / "template.yaml")
    resources = template["Resources"]
    deliver = resources["DeliverFunction"]["Properties"]
    batch = deliver["Events"]["Results"]["Properties"]["BatchSize"]
    settings = ResultsSettings()
    per_forward = settings.results_connect_timeout_s + settings.results_read_timeout_s
    from relay.results.deliver import FORWARD_MARGIN_S

    assert deliver["Timeout"] >= batch * (per_forward + FORWARD_MARGIN_S)
    visibility = resources["ResultsQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility == 6 * deliver["Timeout"]

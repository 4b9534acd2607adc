"""The registry's mirroring hook on the results path, in-process (moto, no network), with a
destination of the test's own: its plan is stored with the result in the transaction that records
it, it is handed the recorded result by the message that recorded it (again on that message's
redelivery, never by a copy), a skipped result is counted on its execution and listed by
``?mirror=skipped``; the input profile's attributes it asks for are kept on the links."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from relay.core.queue import Queue
from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.optimized.links import link_items
from relay.destinations.optimized.store import ChunkResult, PendingChunk
from relay.executions import registry
from relay.executions.models import ResultMirror
from relay.results import listing, store
from relay.results.adapters.optimized import normalise
from relay.results.deliver import DeliverDeps, handle_message
from relay.results.messages import record_message
from relay.results.settings import ResultsSettings

NOW = 1_800_000_000.0
TTL = 7 * 86_400


class Mirroring(registry.Destination):
    """Mirrors each matched result onto the profile named by the input profile's ``crm_id``."""

    name = "test_mirroring"

    def __init__(self) -> None:
        self.handed: list[dict[str, Any]] = []

    def kept_profile_attributes(self) -> tuple[str, ...]:
        return ("crm_id",)

    def mirror_plan(self, result: dict[str, Any], profile_attributes: dict[str, Any]) -> ResultMirror | None:
        if not result.get("execution_id"):
            return None
        crm_id = profile_attributes.get("crm_id")
        if crm_id is None:
            return ResultMirror(destination=self.name, status="skipped", reason="no crm_id")
        return ResultMirror(
            destination=self.name, status="mirrored", profile=crm_id, execution_id="m-" + crm_id
        )

    def mirror_results(self, results: list[dict[str, Any]], emit: registry.Emit) -> None:
        self.handed += results


@pytest.fixture
def mirroring() -> Iterator[Mirroring]:
    destination = registry.register(Mirroring())
    yield destination
    registry._registered.pop(destination.name)


@pytest.fixture
def aws() -> Iterator[tuple[Table, Queue]]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        attrs = ["pk", "sk", "gsi2pk", "gsi2sk", "gsi3pk", "gsi3sk"]
        ddb.create_table(
            TableName="relay",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in attrs],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": index,
                    "KeySchema": [
                        {"AttributeName": f"{index}pk", "KeyType": "HASH"},
                        {"AttributeName": f"{index}sk", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "KEYS_ONLY"},
                }
                for index in (keys.WAITING_INDEX, keys.MIRROR_SKIPPED_INDEX)
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(QueueName="results")["QueueUrl"]
        dlq = sqs.create_queue(QueueName="results-dlq")["QueueUrl"]
        yield Table(ddb, "relay"), Queue(sqs, url, dlq)


def linked_event(table: Table, i: int, attributes: dict[str, Any]) -> dict[str, Any]:
    """An event of profile ``p-i`` of execution x1, its link keeping ``attributes``."""
    table.put(
        {
            **keys.profile_link(f"p-{i}"),
            "execution_id": "x1",
            "chunk_seq": 0,
            "profile_index": i,
            "attributes": attributes,
        }
    )
    e = normalise({"id": f"e-{i}", "type": "sms.delivered", "profile": {"uuid": f"p-{i}"}}).model_dump(
        mode="json"
    )
    store.mark_events(table, "optimized", [e], NOW, TTL)
    return e


def deps(table: Table, queue: Queue, emitted: dict[str, float]) -> DeliverDeps:
    emit = lambda name, value: emitted.__setitem__(name, emitted.get(name, 0) + value)  # noqa: E731
    return DeliverDeps(
        table, queue, ResultsSettings(), endpoint=None, clock=lambda: NOW, links=table, emit=emit
    )


def test_a_result_is_planned_when_recorded_and_handed_over_by_the_message_that_recorded_it(
    aws: tuple[Table, Queue], mirroring: Mirroring
) -> None:
    table, queue = aws
    table.put({**keys.execution("x1"), "status": "completed"})
    e = linked_event(table, 1, {"crm_id": "c-1"})
    first = record_message("optimized", "e-1", event=e, received_at="2027-01-15T08:00:00.000Z")
    emitted: dict[str, float] = {}
    assert handle_message(first, deps(table, queue, emitted)) == "recorded (forwarding off)"
    plan = {"destination": "test_mirroring", "status": "mirrored", "profile": "c-1", "execution_id": "m-c-1"}
    [stored], _ = store.page(table, keys.execution_partition("x1"), type_=None, limit=10, start=None)
    assert stored["mirrors"] == [plan]  # (None values are not stored)
    assert [r["event_id"] for r in mirroring.handed] == ["e-1"]
    # A copy (a platform retry, the reconciler) does not hand it over; a redelivery of the message
    # that recorded it (it crashed after recording) does, from what was stored.
    handle_message(record_message("optimized", "e-1"), deps(table, queue, emitted))
    assert len(mirroring.handed) == 1
    handle_message(first, deps(table, queue, emitted))
    assert [r["event_id"] for r in mirroring.handed] == ["e-1", "e-1"]
    assert mirroring.handed[1]["mirrors"] == mirroring.handed[0]["mirrors"]
    execution = table.get(keys.execution("x1"))
    assert execution is not None
    assert (execution["results_delivered"], "results_mirror_skipped" in execution) == (1, False)
    assert "ResultsMirrorSkipped" not in emitted


def test_a_skipped_result_is_counted_once_and_listed_with_its_reason(
    aws: tuple[Table, Queue], mirroring: Mirroring
) -> None:
    table, queue = aws
    table.put({**keys.execution("x1"), "status": "completed"})
    emitted: dict[str, float] = {}
    for i in range(3):
        e = linked_event(table, i, {"crm_id": "c-1"} if i == 1 else {})
        message = record_message(
            "optimized", e["event_id"], event=e, received_at=f"2027-01-15T08:00:0{i}.000Z"
        )
        handle_message(message, deps(table, queue, emitted))
        handle_message(message, deps(table, queue, emitted))  # redelivered: counted once all the same
    execution = table.get(keys.execution("x1"))
    assert execution is not None
    assert (execution["results_delivered"], execution["results_mirror_skipped"]) == (3, 2)
    assert emitted["ResultsMirrorSkipped"] == 2
    page = listing.list_mirror_skipped(table, type_=None, limit=1, next_token=None)
    assert [r.event_id for r in page.items] == ["e-0"]
    assert page.items[0].mirrors[0].reason == "no crm_id"
    rest = listing.list_mirror_skipped(table, type_=None, limit=10, next_token=page.next_token)
    assert ([r.event_id for r in rest.items], rest.next_token) == (["e-2"], None)
    assert listing.list_mirror_skipped(table, type_="sms.reply", limit=10, next_token=None).items == []
    with pytest.raises(ValueError, match="next_token"):
        listing.list_mirror_skipped(table, type_=None, limit=10, next_token=json.dumps({"pk": "x"}))
    # The listing of the execution's results is as before, with the plan on each.
    [skipped, mirrored, _], _ = store.page(
        table, keys.execution_partition("x1"), type_=None, limit=10, start=None
    )
    assert (skipped["mirrors"][0]["status"], mirrored["mirrors"][0]["status"]) == ("skipped", "mirrored")
    assert mirroring.handed[0]["event_id"] == "e-1"


def test_a_result_without_a_mirroring_destination_is_stored_as_before(aws: tuple[Table, Queue]) -> None:
    table, queue = aws
    table.put({**keys.execution("x1"), "status": "completed"})
    e = linked_event(table, 1, {})
    handle_message(record_message("optimized", "e-1", event=e, received_at="r"), deps(table, queue, {}))
    [stored], _ = store.page(table, keys.execution_partition("x1"), type_=None, limit=10, start=None)
    assert stored["mirrors"] == []
    assert "gsi3pk" not in stored


def test_the_links_keep_the_input_profile_attributes_a_mirroring_destination_asks_for(
    mirroring: Mirroring,
) -> None:
    chunk = PendingChunk("e1", 0, "g", "lane", 2, 0.0, "x")
    chunk.profiles = [
        {
            "index": 4,
            "ref": "r4",
            "attributes": [{"name": "crm_id", "value": "c-4"}, {"name": "tier", "value": 1}],
        },
        {"index": 5, "ref": "r5"},
    ]
    sent = [{"index": 4, "ref": "r4", "uuid": "u4"}, {"index": 5, "ref": "r5", "uuid": "u5"}]
    fields = {"batch_uuid": "B", "schedule_uuid": "s", "upstream_profiles_json": json.dumps(sent)}
    items = {i["pk"]: i for i in link_items([ChunkResult(chunk, "b", "sent", fields)], 123)}
    assert items["LINK#profile#u4"]["attributes"] == {"crm_id": "c-4"}
    assert items["LINK#profile#u5"]["attributes"] == {}

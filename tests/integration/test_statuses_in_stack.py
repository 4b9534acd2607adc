"""Statuses that say what happened, through the local stack: an Optimized.app campaign handed
upstream for later reads `scheduled` with `scheduled_for`; one cancelled part-way reads
`partially_cancelled`; attempts count every attempt; an Optimove run shows when it was last polled
and counts its call; cancelling a scheduled Optimove run frees its dedupe_key."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from conftest import Api, batches_for, schedule
from relay_local.stack import LocalStack
from test_optimove import in_future, ov, terminal, trigger, wait  # noqa: F401 - ov is a fixture

pytestmark = pytest.mark.integration


def test_a_campaign_handed_upstream_for_later_reads_scheduled_for_its_start(
    api: Api, relay: LocalStack, group: str
) -> None:
    start = schedule(3600)
    answer = api.trigger(group, 2, start).json()
    done = api.wait(answer["execution_id"])
    assert done["status"] == "scheduled", done
    assert done["scheduled_for"] == start["start_at"].replace("Z", ".000Z")
    assert done["chunks"]["sent"] == 1
    [batch] = batches_for(relay, group)
    assert batch.status == 201
    listed = api.http.get("/v1/executions", params={"status": "scheduled"}).json()["items"]
    assert [e["execution_id"] for e in listed] == [answer["execution_id"]]
    sent_now = api.wait(api.trigger(group, 1).json()["execution_id"])  # no start_at: started when sent
    assert (sent_now["status"], sent_now["scheduled_for"]) == ("completed", None)


def test_an_execution_cancelled_part_way_says_so(api: Api, relay: LocalStack, group: str) -> None:
    # 12 chunks, 3 sends per window: the first request is held upstream while the cancel lands.
    hold = relay.sandbox.hold_next()
    answer = api.trigger(group, 600).json()
    try:
        assert hold.wait_arrived(30), "the first batch never reached the sandbox"
        cancel = api.http.delete(f"/v1/executions/{answer['execution_id']}")
        assert cancel.status_code == 200, cancel.text
    finally:
        hold.release()
    done = api.wait(answer["execution_id"], lambda e: e["chunks"]["pending"] == 0)
    chunks = done["chunks"]
    assert chunks["sent"] >= 1
    assert chunks["cancelled"] >= 1
    assert chunks["sent"] + chunks["cancelled"] == 12
    assert done["status"] == "partially_cancelled", done
    listed = api.http.get("/v1/executions", params={"status": "partially_cancelled"}).json()["items"]
    assert [e["execution_id"] for e in listed] == [answer["execution_id"]]


def test_a_chunk_sent_at_the_first_try_counts_one_attempt(api: Api, relay: LocalStack, group: str) -> None:
    done = api.wait(api.trigger(group, 1).json()["execution_id"])
    assert [c["attempts"] for c in done["chunk_details"]] == [1]


def test_an_optimove_run_counts_its_call_and_shows_its_last_poll(api: Api, ov: Any) -> None:  # noqa: F811
    answer = trigger(api).json()
    view = wait(api, answer["execution_id"], terminal)
    assert view["status"] == "published", view
    details = view["optimove"]
    assert details["attempts"] == 1
    assert details["last_polled_at"] is not None
    assert details["last_polled_at"] >= details["sent_at"]


def test_cancelling_a_scheduled_optimove_run_frees_its_dedupe_key(api: Api, ov: Any) -> None:  # noqa: F811
    generator, key = f"gen-{uuid.uuid4()}", f"match-{uuid.uuid4()}-start"
    first = trigger(api, generator, dedupe_key=key, send_at=in_future(3600)).json()
    assert (first["status"], first["duplicate"]) == ("scheduled", False)
    held = trigger(api, generator, dedupe_key=key, send_at=in_future(3600)).json()
    assert (held["execution_id"], held["duplicate"]) == (first["execution_id"], True)

    cancelled = api.http.delete(f"/v1/executions/{first['execution_id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"

    again = trigger(api, generator, dedupe_key=key, send_at=in_future(3600))
    assert again.status_code == 202, again.text
    second = again.json()
    assert (second["status"], second["duplicate"]) == ("scheduled", False)
    assert second["execution_id"] != first["execution_id"]
    assert api.execution(first["execution_id"])["status"] == "cancelled"
    # The new run holds the key now: a repeat is its duplicate.
    repeat = trigger(api, generator, dedupe_key=key, send_at=in_future(3600)).json()
    assert (repeat["execution_id"], repeat["duplicate"]) == (second["execution_id"], True)
    assert api.http.delete(f"/v1/executions/{second['execution_id']}").status_code == 200
    assert not ov.accepted_runs()  # nothing was sent: both runs were cancelled before their send_at

"""Dispatch to the sandbox Optimized.app over the local stack: limits as the upstream sees them,
packing, start times, and what every upstream answer does to chunks and executions."""

from __future__ import annotations

import json
import math
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import (
    CAMPAIGN,
    GROUP_LIMIT,
    GROUP_WINDOW_S,
    TOKEN_LIMIT,
    TOKEN_WINDOW_S,
    Api,
    batches_for,
    chunk_items,
    dlq_messages,
    profile,
    profiles,
    queue_depth,
    relay_env,
    schedule,
    wait_for,
)
from relay.core.limiter.sliding_log import Log, Rule
from relay.core.store.table import Table
from relay.destinations.optimized import store as dispatch_store
from relay.destinations.optimized.store import ClaimedBatch
from relay_local.stack import LocalStack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

UPSTREAM_TIME = "%Y-%m-%d %H:%M:%S"


def _max_in_window(times: list[float], window_s: float) -> int:
    ordered, best, lo = sorted(times), 0, 0
    for hi, t in enumerate(ordered):
        while ordered[lo] + window_s <= t:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _upstream_ts(value: str) -> float:
    return datetime.strptime(value, UPSTREAM_TIME).replace(tzinfo=UTC).timestamp()


def _iso_ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _phones(batch: Any) -> list[str]:
    return [p["person"]["phone_number"] for p in batch.profiles]


def _idle(relay: LocalStack, sqs: Any) -> None:
    """Wait until no wake-up is queued or in flight: every dispatcher has finished."""
    url = relay.resources.url("DispatchQueue")
    wait_for(lambda: queue_depth(sqs, url) == 0, timeout=20, what="dispatch queue drained")


# -- the happy path, limits and start times -------------------------------------------------------


def test_one_group_within_its_limit_in_order_with_shifted_starts(
    api: Api, relay: LocalStack, ddb: Any, group: str
) -> None:
    """10 chunks at 3 per 2 s, start_at 3 s ahead: later windows are late and start when sent."""
    created = time.time()
    people = profiles(500)
    answer = api.trigger(group, people, schedule(3, calls_per_minute=30)).json()
    assert answer["chunks"] == 10
    # Estimate: 10 batches, 3 per window -> three more windows after the first.
    windows = math.ceil(10 / GROUP_LIMIT) - 1
    accepted_at = _iso_ts(api.execution(answer["execution_id"])["created_at"])
    estimate = _iso_ts(answer["estimated_dispatch_done_at"])
    assert estimate == pytest.approx(accepted_at + windows * (GROUP_WINDOW_S + 0.02), abs=0.01)
    assert len(answer["warnings"]) == 1
    assert "after start_at" in answer["warnings"][0]

    seen: set[str] = set()

    def finished(e: dict[str, Any]) -> bool:
        seen.add(e["status"])
        return e["status"] in ("completed", "partially_failed", "failed")

    done = api.wait(answer["execution_id"], finished, timeout=40)
    assert done["status"] == "completed"
    assert "dispatching" in seen
    assert done["chunks"]["sent"] == 10
    assert done["profiles"]["sent"] == 500
    assert done["warnings"] == answer["warnings"]

    # As the upstream saw it: no 429, never more than the limit in any window.
    stats = relay.sandbox.stats()
    assert stats["by_status"] == {"201": 10}
    assert stats["max_in_any_window"][group] <= GROUP_LIMIT
    received = batches_for(relay, group, 201)
    assert _max_in_window([b.arrived_at for b in received], GROUP_WINDOW_S) <= GROUP_LIMIT
    # Every profile exactly once, without our bookkeeping fields.
    sent_phones = sorted(p for b in received for p in _phones(b))
    assert sent_phones == sorted(p["person"]["phone_number"] for p in people)
    for b in received:
        assert len(b.profiles) == 50
        assert all(set(p) <= {"person", "attributes"} for p in b.profiles)  # index/ref stay with us
        assert b.schedule["campaign"] == {"uuid": CAMPAIGN}
        assert b.schedule["calls_per_minute"] == 30
        assert len(b.schedule["start_at"]) == 19
        _upstream_ts(b.schedule["start_at"])  # 'YYYY-MM-DD HH:MM:SS'

    # Start times: as asked while on time; a late chunk starts when sent (never in the past).
    start_at = _upstream_ts(time.strftime(UPSTREAM_TIME, time.gmtime(created + 3)))
    late = [b for b in received if b.arrived_at > start_at]
    assert late, "compressed limits should have made later chunks late"
    for b in received:
        sent_start = _upstream_ts(b.schedule["start_at"])
        if b.arrived_at <= start_at - 0.5:
            assert sent_start == start_at
        assert sent_start >= math.floor(b.arrived_at)
    details = {c["seq"]: c for c in done["chunk_details"]}
    assert done["chunks"]["start_shifted"] == sum(c["start_shifted"] for c in details.values())
    assert done["chunks"]["start_shifted"] >= len(late) - GROUP_LIMIT  # a boundary send may be either
    assert done["chunks"]["start_shifted"] >= 1

    # Stored per chunk: batch/schedule uuid and each profile's upstream uuid, in input order.
    by_uuid = {b.batch_uuid: b for b in received}
    for c in chunk_items(ddb, answer["execution_id"]):
        assert c["status"] == "sent"
        assert c["batch_uuid"] in by_uuid
        assert c["schedule_uuid"]
        refs = json.loads(c["upstream_profiles_json"])
        assert [r["index"] for r in refs] == list(range(50 * c["seq"], 50 * c["seq"] + 50))
        assert [r["ref"] for r in refs] == [f"ref-{r['index']}" for r in refs]
        assert all(r["uuid"] and r["external_id"] for r in refs)
        sent_batch = by_uuid[c["batch_uuid"]]
        assert _phones(sent_batch) == [people[r["index"]]["person"]["phone_number"] for r in refs]
        view = details[c["seq"]]
        assert view["batch_uuid"] == c["batch_uuid"]
        assert view["schedule_uuid"] == c["schedule_uuid"]
        assert view["status"] == "sent"
        assert view["sent_at"]
        assert view["error"] is None


def test_groups_go_in_parallel_within_the_token_limit(api: Api, relay: LocalStack) -> None:
    groups = [str(uuid.uuid4()) for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda g: api.trigger(g, 300).json(), groups))
    for answer in answers:
        assert api.wait(answer["execution_id"], timeout=40)["status"] == "completed"
    stats = relay.sandbox.stats()
    received = [b for b in relay.sandbox.received if b.status == 201]
    times = [b.arrived_at for b in received]
    diagnostics = {
        "token_max": _max_in_window(times, TOKEN_WINDOW_S),
        "group_max": stats["max_in_any_window"],
        "429_at": [
            (b.group_id[:8], round(b.arrived_at % 100, 2)) for b in relay.sandbox.received if b.status == 429
        ],
    }
    assert stats["by_status"] == {"201": 24}, diagnostics
    assert _max_in_window(times, TOKEN_WINDOW_S) <= TOKEN_LIMIT
    for g in groups:
        assert stats["max_in_any_window"][g] <= GROUP_LIMIT
    # Parallel: the token's windows held more than one group's limit.
    assert _max_in_window(times, TOKEN_WINDOW_S) > GROUP_LIMIT


def test_single_profile_triggers_are_packed_and_mapped_back(
    api: Api, relay: LocalStack, ddb: Any, group: str
) -> None:
    sched = schedule(3600)
    other = schedule(7200)  # another start time: never in the same upstream batch
    with relay_env(DISPATCH_LINGER_S="1.0"), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: (i, api.trigger(group, [profile(i)], sched).json()), range(40)))
        later = pool.map(lambda i: (i, api.trigger(group, [profile(i)], other).json()), range(40, 45))
        answers += list(later)
        for _, answer in answers:
            api.wait(answer["execution_id"], timeout=30)
    received = batches_for(relay, group)
    assert all(b.status == 201 for b in received)
    assert len(received) <= 6, [len(b.profiles) for b in received]
    assert sum(len(b.profiles) for b in received) == 45
    by_uuid = {b.batch_uuid: b for b in received}
    for b in received:
        starts = {b.schedule["start_at"]}
        assert len(starts) == 1
    for i, answer in answers:
        view = api.execution(answer["execution_id"])
        assert view["status"] == "scheduled"
        [chunk] = view["chunk_details"]
        batch = by_uuid[chunk["batch_uuid"]]
        phone = profile(i)["person"]["phone_number"]
        assert phone in _phones(batch)
        wanted_start = (sched if i < 40 else other)["start_at"].replace("T", " ").rstrip("Z")
        assert batch.schedule["start_at"] == wanted_start
        [ref] = json.loads(chunk_items(ddb, answer["execution_id"])[0]["upstream_profiles_json"])
        assert ref["ref"] == f"ref-{i}"
        assert ref["uuid"]


def test_a_backlog_of_single_profile_triggers_goes_in_full_batches(
    api: Api, relay: LocalStack, group: str
) -> None:
    """More singles waiting than one window takes: every slot of a window carries a full batch
    (claimed over several transactions: 50 chunks each), none is spent on a part-filled one."""
    backlog = GROUP_LIMIT * 50 + 10
    sched = schedule(3600)
    with relay.pollers.paused(), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: api.trigger(group, [profile(i)], sched).json(), range(backlog)))
    for answer in answers:
        api.wait(answer["execution_id"], timeout=30)
    received = sorted(batches_for(relay, group), key=lambda b: b.arrived_at)
    assert [len(b.profiles) for b in received] == [50] * GROUP_LIMIT + [10]
    assert all(b.status == 201 for b in received)
    assert relay.sandbox.stats()["max_in_any_window"][group] <= GROUP_LIMIT
    sent = sorted(p for b in received for p in _phones(b))
    assert sent == sorted(profile(i)["person"]["phone_number"] for i in range(backlog))


def test_a_claim_spans_transactions_and_leaves_out_a_batch_that_lost_its_race(
    api: Api, relay: LocalStack, ddb: Any, group: str
) -> None:
    table = Table(ddb, relay.resources.name("RelayTable"))
    with relay.pollers.paused(), ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: api.trigger(group, [profile(i)], schedule(3600)), range(110)))
        chunks = dispatch_store.pending(table, group, 200)
        assert len(chunks) == 110
        batches = [ClaimedBatch(f"b{n}", chunks[n * 50 : n * 50 + 50]) for n in range(3)]
        stolen = batches[1].chunks[10]  # another dispatcher claimed this one meanwhile
        ddb.update_item(
            TableName=table.name,
            Key={"pk": {"S": stolen.key["pk"]}, "sk": {"S": stolen.key["sk"]}},
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":s": {"S": "sending"}},
        )
        logs = {f"test#{group}": Log().with_hits(Rule(3, 2.0), time.time(), 3)}
        claimed = dispatch_store.claim(table, batches, logs, time.time(), expires_at=int(time.time()) + 60)
        # 52 items, then 50 + 10 + 1: the second transaction fails as a whole, the first stands.
        assert [b.batch_id for b in claimed] == ["b0"]
        status = {(c["execution_id"], c["seq"]): c["status"] for c in map(table.get, [c.key for c in chunks])}
        assert [status[(c.execution_id, c.seq)] for c in batches[0].chunks] == ["sending"] * 50
        left = [c for b in batches[1:] for c in b.chunks if c is not stolen]
        assert {status[(c.execution_id, c.seq)] for c in left} == {"pending"}


# -- upstream answers -------------------------------------------------------------------------------


def test_429_is_retried_after_the_reset_and_nothing_is_lost(
    api: Api, relay: LocalStack, ddb: Any, group: str
) -> None:
    reset = math.ceil(time.time()) + 2
    relay.sandbox.fail_next(429, headers={"X-Ratelimit-Reset": str(reset), "Retry-After": "2"})
    answer = api.trigger(group, 50, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=30)
    assert done["status"] == "scheduled"
    received = batches_for(relay, group)
    assert [b.status for b in received] == [429, 201]
    assert _phones(received[1]) == [p["person"]["phone_number"] for p in profiles(50)]
    assert received[1].arrived_at >= reset - 0.05  # not before the upstream said
    # A 429 is not an attempt against the chunk: only the request that was taken counts.
    assert all(c["attempts"] == 1 for c in chunk_items(ddb, answer["execution_id"]))


@pytest.mark.parametrize("status", [500, 503])
def test_5xx_is_retried_with_backoff(api: Api, relay: LocalStack, group: str, status: int) -> None:
    relay.sandbox.fail_next(status, count=2)
    answer = api.trigger(group, 1, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=30)
    assert done["status"] == "scheduled"
    assert [b.status for b in batches_for(relay, group)] == [status, status, 201]
    [chunk] = done["chunk_details"]
    assert chunk["attempts"] == 3  # two 5xx answers, then the send that succeeded
    assert chunk["batch_uuid"] == batches_for(relay, group, 201)[0].batch_uuid


def test_5xx_until_max_attempts_dead_letters(
    api: Api, relay: LocalStack, ddb: Any, sqs: Any, group: str
) -> None:
    relay.sandbox.fail_next(500, count=3, body={"message": "Server Error"})
    answer = api.trigger(group, 1, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=30)
    assert done["status"] == "failed"
    assert done["chunks"]["dead_lettered"] == 1
    assert done["profiles"]["dead_lettered"] == 1
    [chunk] = done["chunk_details"]
    assert chunk["status"] == "dead_lettered"
    assert chunk["attempts"] == 3
    assert chunk["error"]["status"] == 500
    assert "Server Error" in chunk["error"]["message"]
    _idle(relay, sqs)
    assert [b.status for b in batches_for(relay, group)] == [500, 500, 500]
    [message] = dlq_messages(sqs, relay.resources.url("DispatchDeadLetterQueue"))
    assert message["kind"] == "dead_chunk"
    assert message["execution_id"] == answer["execution_id"]
    assert message["seq"] == 0
    assert message["group_id"] == group
    assert "Server Error" in message["reason"]


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (401, {"message": "Unauthenticated."}, "Unauthenticated."),
        (404, {"message": "No query results for model [Group]."}, "No query results"),
        (
            422,
            {
                "message": "The given data was invalid.",
                "errors": {"profiles.0.person.phone_number": ["The phone number is invalid."]},
            },
            "profiles.0.person.phone_number: The phone number is invalid.",
        ),
    ],
)
def test_4xx_fails_the_chunk_without_retry(
    api: Api, relay: LocalStack, sqs: Any, group: str, status: int, body: dict[str, Any], expected: str
) -> None:
    relay.sandbox.fail_next(status, body=body)
    answer = api.trigger(group, 1, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=30)
    assert done["status"] == "failed"
    [chunk] = done["chunk_details"]
    assert chunk["status"] == "failed"
    assert chunk["error"]["status"] == status
    assert expected in chunk["error"]["message"]
    assert chunk["batch_uuid"] is None
    _idle(relay, sqs)
    assert [b.status for b in batches_for(relay, group)] == [status]


def test_one_chunk_failing_makes_the_execution_partially_failed(
    api: Api, relay: LocalStack, group: str
) -> None:
    relay.sandbox.fail_next(422, body={"message": "The given data was invalid."})
    answer = api.trigger(group, 100, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=30)
    assert done["status"] == "partially_failed"
    assert (done["chunks"]["sent"], done["chunks"]["failed"]) == (1, 1)
    assert (done["profiles"]["sent"], done["profiles"]["failed"]) == (50, 50)
    by_status = {c["status"]: c for c in done["chunk_details"]}
    assert by_status["sent"]["batch_uuid"]
    assert by_status["failed"]["error"]["status"] == 422


def test_dropped_connection_is_ambiguous_and_not_resent(
    api: Api, relay: LocalStack, sqs: Any, group: str
) -> None:
    relay.sandbox.drop_next()
    answer = api.trigger(group, 1, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=30)
    assert done["chunks"]["ambiguous"] == 1
    assert done["profiles"]["ambiguous"] == 1
    assert done["status"] == "partially_failed"
    [chunk] = done["chunk_details"]
    assert chunk["status"] == "ambiguous"
    assert chunk["error"]["message"]
    _idle(relay, sqs)
    assert [b.status for b in batches_for(relay, group)] == [0]


def test_a_claim_whose_dispatcher_vanished_is_settled_though_the_group_had_no_wakeup_left(
    api: Api, relay: LocalStack, ddb: Any, sqs: Any, group: str
) -> None:
    """A dispatcher claims a chunk and dies after its wake-up was spent (taken by another
    dispatcher, which found nothing pending): the group must not go idle with the chunk
    'sending'. The dispatcher that sees another's sends in flight looks again when they would
    count as abandoned, and marks them ambiguous then - nobody wakes the group from outside."""
    table = Table(ddb, relay.resources.name("RelayTable"))
    with relay_env(DISPATCH_STALE_SENDING_S="5"):
        with relay.pollers.paused():
            answer = api.trigger(group, 1, schedule(3600)).json()
            [chunk] = dispatch_store.pending(table, group, 10)
            logs = {f"test#{group}": Log().with_hits(Rule(3, 2.0), time.time(), 1)}
            now = time.time()
            assert dispatch_store.claim(
                table, [ClaimedBatch("vanished", [chunk])], logs, now, expires_at=int(now) + 60
            )
        # The accept's wake-up now runs a dispatcher that finds only the vanished one's claim.
        done = api.wait(answer["execution_id"], timeout=40)
        _idle(relay, sqs)
    assert done["status"] == "partially_failed"
    [detail] = done["chunk_details"]
    assert detail["status"] == "ambiguous"
    assert "may have been sent" in detail["error"]["message"]
    assert batches_for(relay, group) == []  # never sent by the relay itself


def test_read_timeout_is_ambiguous_and_not_resent(api: Api, relay: LocalStack, sqs: Any, group: str) -> None:
    relay.sandbox.delay_next(1.5)  # OPTIMIZED_READ_TIMEOUT_S is 1; the upstream still creates it
    answer = api.trigger(group, 1, schedule(3600)).json()
    done = api.wait(answer["execution_id"], timeout=30)
    assert done["chunk_details"][0]["status"] == "ambiguous"
    _idle(relay, sqs)
    wait_for(lambda: batches_for(relay, group), timeout=5, what="the slow request recorded")
    assert [b.status for b in batches_for(relay, group)] == [201]


def test_ambiguous_is_resent_when_configured(api: Api, relay: LocalStack, group: str) -> None:
    with relay_env(OPTIMIZED_RESEND_AMBIGUOUS="true"):
        relay.sandbox.drop_next()
        answer = api.trigger(group, 1, schedule(3600)).json()
        done = api.wait(answer["execution_id"], timeout=30)
    assert done["status"] == "scheduled"
    assert [b.status for b in batches_for(relay, group)] == [0, 201]
    assert done["chunk_details"][0]["attempts"] == 2  # the dropped request, then the one resent


def _wake(sqs: Any, relay: LocalStack, group: str, times: int) -> None:
    wake = json.dumps({"kind": "wake", "destination": "optimized", "group_id": group})
    for _ in range(times):
        sqs.send_message(QueueUrl=relay.resources.url("DispatchQueue"), MessageBody=wake)


def test_redelivered_wakeups_never_resend(
    api: Api, relay: LocalStack, ddb: Any, sqs: Any, group: str
) -> None:
    answer = api.trigger(group, 250, schedule(3600)).json()
    _wake(sqs, relay, group, 4)  # duplicates while it is being dispatched: concurrent dispatchers
    done = api.wait(answer["execution_id"], timeout=40)
    assert done["status"] == "scheduled"
    _idle(relay, sqs)
    created = batches_for(relay, group, 201)
    assert len(created) == 5
    _wake(sqs, relay, group, 2)  # and after everything was sent
    _idle(relay, sqs)
    assert len(batches_for(relay, group, 201)) == 5
    phones = [p for b in batches_for(relay, group) if b.status == 201 for p in _phones(b)]
    assert len(phones) == len(set(phones)) == 250
    chunks = chunk_items(ddb, answer["execution_id"])
    assert {c["batch_uuid"] for c in chunks} == {b.batch_uuid for b in created}


def test_concurrent_dispatchers_of_one_group_stay_within_its_limit(
    api: Api, relay: LocalStack, sqs: Any, group: str
) -> None:
    """Duplicate wake-ups run several dispatchers for one group at once: the upstream must still
    never see more than the limit in a window (no 429)."""
    answer = api.trigger(group, 500, schedule(3600)).json()
    _wake(sqs, relay, group, 4)
    api.wait(answer["execution_id"], timeout=40)
    statuses = [(b.status, round(b.arrived_at % 100, 2)) for b in batches_for(relay, group)]
    assert [s for s, _ in statuses] == [201] * 10, statuses
    assert relay.sandbox.stats()["max_in_any_window"][group] <= GROUP_LIMIT


def test_relay_dlq_redrives_a_dead_lettered_chunk_to_completion(
    api: Api, relay: LocalStack, sqs: Any, group: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from relay_ops import dlq

    relay.sandbox.fail_next(500, count=3, body={"message": "Server Error"})
    answer = api.trigger(group, 1, schedule(3600)).json()
    assert api.wait(answer["execution_id"], timeout=30)["status"] == "failed"
    dead_letters = relay.resources.url("DispatchDeadLetterQueue")
    assert [m["kind"] for m in dlq_messages(sqs, dead_letters)] == ["dead_chunk"]
    # list says what it is and why it died, and leaves it there to be re-driven at once
    capsys.readouterr()
    assert dlq.main(["list", "--queue", "dispatch"]) == 0
    # (the stack's functions print to this process's stdout too: keep relay-dlq's own lines)
    lines = capsys.readouterr().out.splitlines()
    [listed] = [json.loads(line) for line in lines if line.startswith('{"queue"')]
    assert (listed["destination"], listed["execution_id"]) == ("optimized", answer["execution_id"])
    assert "Server Error" in listed["why"]
    assert [line for line in lines if line.startswith("dispatch:")] == ["dispatch: 1 message(s)"]

    assert dlq.main(["redrive", "--queue", "dispatch"]) == 0
    done = api.wait(answer["execution_id"], until=lambda e: e["status"] == "scheduled", timeout=30)
    assert (done["chunks"]["sent"], done["chunks"]["dead_lettered"]) == (1, 0)
    assert [b.status for b in batches_for(relay, group)] == [500, 500, 500, 201]
    assert queue_depth(sqs, dead_letters) == 0

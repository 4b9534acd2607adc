"""Results forwarding that survives a customer outage, in-process (moto's table, a recording
queue, a fake clock, a scripted endpoint): the retry schedule, chained SQS delays past 15
minutes, Retry-After, disabling after the whole schedule, results held while disabled, and the
replay that turns forwarding on again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from relay.core.store import keys
from relay.core.store.table import Table
from relay.results import replay, store
from relay.results.deliver import DeliverDeps, handle_message, scheduled_delay, webhook_id
from relay.results.endpoint import Delivered, RetryLater
from relay.results.models import ReplayRequest
from relay.results.settings import ResultsSettings

URL = "https://customer.example/results"
T0 = 1_800_000_000.0
DEFAULT = [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]


class RecordingQueue:
    def __init__(self) -> None:
        self.sent: list[tuple[dict[str, Any], float]] = []
        self.dead: list[tuple[dict[str, Any], str]] = []

    def send(self, message: dict[str, Any], *, delay_s: float = 0) -> None:
        self.sent.append((message, delay_s))

    def send_many(self, messages: list[dict[str, Any]], **_: Any) -> list[int]:
        self.sent += [(m, 0) for m in messages]
        return []

    def dead_letter(self, message: dict[str, Any], reason: str) -> None:
        self.dead.append((message, reason))

    def take(self) -> list[tuple[dict[str, Any], float]]:
        taken, self.sent = self.sent, []
        return taken


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def table() -> Iterator[Table]:
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        ddb.create_table(
            TableName="relay",
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            AttributeDefinitions=[
                {"AttributeName": a, "AttributeType": "S"} for a in ("pk", "sk", "gsi2pk", "gsi2sk")
            ],
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
        yield Table(ddb, "relay")


def deps_for(table: Table, outcomes: list[Any], **settings: Any) -> tuple[DeliverDeps, RecordingQueue, Clock]:
    queue, clock = RecordingQueue(), Clock()
    endpoint = mock.Mock(url=URL)
    endpoint.post.side_effect = outcomes
    deps = DeliverDeps(table, queue, ResultsSettings(**settings), endpoint, clock=clock)  # type: ignore[arg-type]
    deps.emit = mock.Mock()
    return deps, queue, clock


def view(event_id: str, received_at: str = "2027-01-15T08:00:00.000Z") -> dict[str, Any]:
    return {"event_id": event_id, "type": "sms.delivered", "received_at": received_at, "raw": None}


def deliver_until_quiet(
    deps: DeliverDeps, queue: RecordingQueue, clock: Clock, first: dict[str, Any]
) -> list[str]:
    """Run a message and every message it queues, moving the clock by each SQS delay."""
    outcomes, pending = [], [(first, 0.0)]
    while pending:
        message, delay = pending.pop(0)
        clock.now += delay
        outcomes.append(handle_message(message, deps))
        pending += queue.take()
    return outcomes


# -- the schedule --------------------------------------------------------------------------------


def test_the_default_schedule_is_svix_like_and_old_settings_keep_their_meaning() -> None:
    assert ResultsSettings().retry_schedule() == DEFAULT
    assert 27.5 < sum(DEFAULT) / 3600 < 28  # ~27.6 h of retries (up to 10% more with jitter)
    # RESULTS_MAX_ATTEMPTS bounds the attempts: fewer cut the schedule, more repeat its last delay.
    assert ResultsSettings(results_max_attempts=3).retry_schedule() == [5.0, 300.0]
    assert ResultsSettings(results_retry_schedule_s="1,2", results_max_attempts=5).retry_schedule() == [
        1,
        2,
        2,
        2,
    ]
    # A configuration that tuned the exponential back-off and names no schedule keeps it.
    assert ResultsSettings(results_retry_base_s=0).retry_schedule() is None
    assert ResultsSettings(results_retry_base_s=0, results_retry_schedule_s="0").retry_schedule() == [0.0] * 7
    assert ResultsSettings(results_retry_schedule_s="").retry_schedule() is None
    with pytest.raises(ValueError, match="RESULTS_RETRY_SCHEDULE_S"):
        ResultsSettings(results_retry_schedule_s="5,-1")


def test_a_delay_follows_the_schedule_with_jitter_and_never_precedes_retry_after() -> None:
    for attempt, expected in enumerate(DEFAULT, start=1):
        assert expected <= scheduled_delay(attempt, DEFAULT, None, 86_400) <= expected * 1.1
    assert scheduled_delay(1, DEFAULT, 120.0, 86_400) == 120.0  # Retry-After beyond the 5 s
    assert scheduled_delay(1, DEFAULT, 10 * 86_400, 86_400) == 86_400  # a wild one is capped


def test_a_retry_hours_away_travels_in_chained_sqs_delays(table: Table) -> None:
    deps, queue, clock = deps_for(table, [RetryLater(503, "HTTP 503"), Delivered(200)])
    deps.settings = ResultsSettings(results_retry_schedule_s="7200")
    assert handle_message({"kind": "forward", "result": view("e-1"), "attempt": 1}, deps).startswith(
        "retry in"
    )
    [(retry, delay)] = queue.take()
    assert delay == 900  # SQS's ceiling; the message says when it is due
    assert 7200 <= retry["due_at"] - T0 <= 7920
    hops = 0
    while True:
        clock.now += delay
        outcome = handle_message(retry, deps)
        if outcome != "retry not due yet: waiting again":
            break
        [(retry, delay)] = queue.take()
        hops += 1
        assert 0 < delay <= 900
    assert outcome == "forwarded"
    assert clock.now >= retry["due_at"] - 1  # never forwarded before it was due
    assert hops >= 7  # 2 h in 15-minute hops
    assert deps.endpoint.post.call_count == 2  # type: ignore[union-attr]


# -- disabling, held results, replay ------------------------------------------------------------


def test_an_endpoint_failing_for_the_whole_schedule_is_disabled(
    table: Table, caplog: pytest.LogCaptureFixture
) -> None:
    failures = [RetryLater(500, "HTTP 500")] * 8
    deps, queue, clock = deps_for(table, failures)
    outcomes = deliver_until_quiet(
        deps, queue, clock, {"kind": "forward", "result": view("e-1"), "attempt": 1}
    )
    assert deps.endpoint.post.call_count == 8  # type: ignore[union-attr]
    assert outcomes[-1] == "dead-lettered: forwarding disabled"
    assert clock.now - T0 >= sum(DEFAULT)  # about a day and a half of retries
    assert [m["result"]["event_id"] for m, _ in queue.dead] == ["e-1"]
    state = store.forwarding_state(table, URL, consistent=True)
    assert state["disabled"] is True
    assert "retry schedule" in state["reason"]
    deps.emit.assert_any_call("ResultsForwardingDisabled", 1)  # type: ignore[attr-defined]
    # A webhook-id stays the same across every attempt.
    ids = {c.args[0] for c in deps.endpoint.post.call_args_list}  # type: ignore[union-attr]
    assert ids == {webhook_id(view("e-1"))}

    # Further results are stored (by the record step) but not forwarded; the state counts them.
    later, _, _ = deps_for(table, [])
    assert handle_message({"kind": "forward", "result": view("e-2"), "attempt": 1}, later).startswith(
        "not forwarded: forwarding is disabled"
    )
    later.endpoint.post.assert_not_called()  # type: ignore[union-attr]
    assert store.forwarding_state(table, URL, consistent=True)["held"] == 1


def test_one_result_refused_while_others_get_through_does_not_disable(table: Table) -> None:
    deps, queue, clock = deps_for(table, [RetryLater(400, "HTTP 400")] * 3, results_max_attempts=3)
    deps.settings = ResultsSettings(results_max_attempts=3, results_retry_schedule_s="10")
    assert handle_message({"kind": "forward", "result": view("bad"), "attempt": 1}, deps).startswith("retry")
    clock.now += 11
    deps.endpoint.post.side_effect = [
        Delivered(200),
        RetryLater(400, "HTTP 400"),
        RetryLater(400, "HTTP 400"),
    ]  # type: ignore[union-attr]
    assert handle_message({"kind": "forward", "result": view("good"), "attempt": 1}, deps) == "forwarded"
    queue.take()
    clock.now += 11
    assert handle_message({"kind": "forward", "result": view("bad"), "attempt": 2}, deps).startswith("retry")
    clock.now += 11
    assert handle_message({"kind": "forward", "result": view("bad"), "attempt": 3}, deps) == "dead-lettered"
    assert not store.forwarding_disabled(table, URL)


def test_replay_enables_forwarding_and_queues_the_window_once(table: Table) -> None:
    received = ["2027-01-14T23:59:59.000Z", "2027-01-15T08:00:00.000Z", "2027-01-15T09:00:00.000Z"]
    for i, at in enumerate(received):
        stored = {**view(f"e-{i}", at), "matched": False, "execution_id": None}
        item = store.item_from({**stored, "type": "sms.failed" if i == 2 else "sms.delivered"}, 0)
        table.put(item)
    store.disable_forwarding(table, URL, T0, "failing for longer than the retry schedule")
    store.held(table, URL, T0)
    queue = RecordingQueue()
    request = ReplayRequest(since=datetime(2027, 1, 15, tzinfo=UTC), until=datetime(2027, 1, 16, tzinfo=UTC))
    accepted = replay.replay(table, queue, URL, request, clock=lambda: T0)  # type: ignore[arg-type]
    assert (accepted.queued, accepted.was_disabled, accepted.held, accepted.truncated) == (2, True, 1, False)
    assert not store.forwarding_disabled(table, URL)
    messages = [m for m, _ in queue.sent]
    assert [m["result"]["event_id"] for m in messages] == ["e-1", "e-2"]
    assert all(m["kind"] == "forward" and m["attempt"] == 1 and m["result_key"] for m in messages)

    # Forwarded from the store, with the webhook-id the first attempt had.
    deps, _, _ = deps_for(table, [Delivered(200)])
    assert handle_message(messages[0], deps) == "forwarded"
    assert deps.endpoint.post.call_args.args[0] == webhook_id(view("e-1"))  # type: ignore[union-attr]

    only_failed = ReplayRequest(since=datetime(2027, 1, 14, tzinfo=UTC), until=None, type="sms.failed")
    again = RecordingQueue()
    assert replay.replay(table, again, URL, only_failed, clock=lambda: T0 + 10 * 86_400).queued == 1  # type: ignore[arg-type]
    limited = RecordingQueue()
    window = ReplayRequest(since=datetime(2027, 1, 14, tzinfo=UTC), until=None)
    answer = replay.replay(table, limited, URL, window, clock=lambda: T0 + 10 * 86_400, limit=2)  # type: ignore[arg-type]
    assert (answer.queued, answer.truncated, answer.next_since) == (2, True, received[2])

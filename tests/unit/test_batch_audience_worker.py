"""The audience worker without a network: in-process moto for the table, recording fakes for the
queue, the limiter and Batch. Messages are delivered by hand, in any order, with a frozen clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from relay.core.outcomes import Ambiguous, RateLimited, Unavailable
from relay.core.store import keys
from relay.core.store.table import Table
from relay.destinations.batch.audiences import reconcile, store
from relay.destinations.batch.audiences.accept import AudienceAcceptDeps, accept_write
from relay.destinations.batch.audiences.poll import poll_once
from relay.destinations.batch.audiences.send import AudienceDeps, apply_write
from relay.destinations.batch.audiences.view import audience_view
from relay.destinations.batch.client import Accepted, Rejected
from relay.destinations.batch.settings import BatchSettings

NOW = 1_900_000_000.0
PLENTY = lambda: 60_000  # noqa: E731 - milliseconds left in the invocation


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


class RecordingQueue:
    def __init__(self) -> None:
        self.writes: list[tuple[str, float]] = []
        self.polls: list[tuple[str, int, float]] = []

    def write(self, execution_id: str, *, delay_s: float = 0) -> None:
        self.writes.append((execution_id, delay_s))

    def poll(self, execution_id: str, *, attempt: int, delay_s: float) -> None:
        self.polls.append((execution_id, attempt, delay_s))


class Limiter:
    def __init__(self) -> None:
        self.taken = 0
        self.open = True
        self.answers: list[float | None] = []

    def acquire(self, max_wait_s: float) -> float | None:
        if not self.open:
            return None
        self.taken += 1
        return NOW

    def acquire_until_answered(self, max_wait_s: float) -> float | None:
        return self.acquire(max_wait_s)

    def answered(self, taken_at: float, answered_at: float | None) -> None:
        self.answers.append(answered_at)

    def still_valid(self, taken_at: float) -> bool:
        return True


class Batch:
    """Answers every call from a script (default: 202 with a fresh token; views IN_PROGRESS)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.script: list[Any] = []
        self.views: list[str] = []

    def call(self, method: str, path: str, *, json: Any = None, params: Any = None, now: Any = None) -> Any:
        self.calls.append((method, path, json if json is not None else params))
        if self.script:
            return self.script.pop(0)
        if path == "/audiences/view":
            return Accepted(200, {"indexing_state": self.views.pop(0) if self.views else "IN_PROGRESS"})
        return Accepted(202, {"indexing_token": f"tok-{len(self.calls)}"})

    def writes(self) -> list[tuple[str, Any]]:
        return [(path, body) for method, path, body in self.calls if method == "POST"]


@pytest.fixture(autouse=True)
def no_pause_left_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 429 pauses every sender of the process until its (here: frozen, far) retry time."""
    from relay.core.limiter import slots

    monkeypatch.setattr(slots, "_paused_until", 0.0)


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
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        yield Table(ddb, "relay")


class World:
    def __init__(self, table: Table, **settings: Any) -> None:
        self.table = table
        self.clock = Clock()
        self.queue = RecordingQueue()
        self.batch = Batch()
        self.limiter = Limiter()
        self.settings = BatchSettings(**{"batch_audience_ids_per_call": 2, **settings})
        self.deps = AudienceDeps(
            table=table,
            queue=self.queue,  # type: ignore[arg-type]
            client=self.batch,
            limiter=self.limiter,  # type: ignore[arg-type]
            settings=self.settings,
            clock=self.clock,
        )

    def accept(self, execution_id: str, operation: str, name: str = "a1", **kw: Any) -> None:
        deps = AudienceAcceptDeps(self.table, self.queue, self.settings, self.clock)  # type: ignore[arg-type]
        accept_write(
            operation, name, execution_id=execution_id, request_hash=execution_id, caller="c", deps=deps, **kw
        )  # type: ignore[arg-type]

    def send(self, execution_id: str) -> str:
        return apply_write(execution_id, self.deps, PLENTY)

    def status(self, execution_id: str) -> str:
        return store.get(self.table, execution_id)["status"]


def adds(*ids: str) -> list[dict[str, Any]]:
    return [{"action": "add", "id": i} for i in ids]


def test_writes_are_applied_in_accepted_order_whatever_order_their_messages_come_in(table: Table) -> None:
    w = World(table)
    w.accept("e1", "create")
    w.accept("e2", "update", entries=adds("u1", "u2", "u3", "u4", "u5"))
    w.accept("e3", "replace", entries=[{"id": "v1"}])
    assert w.send("e3").startswith("waiting for write 2")
    assert w.send("e2").startswith("waiting for write 1")
    assert w.batch.calls == []
    assert w.send("e1") == "sent, indexing"
    assert w.queue.writes[-1] == ("e2", 0)  # the create released the audience to its next write
    assert w.send("e3").startswith("waiting for write 2")
    assert w.send("e2") == "sent, indexing"
    assert w.queue.writes[-1] == ("e3", 0)
    assert w.send("e3") == "sent, indexing"
    paths = [path for path, _ in w.batch.writes()]
    assert paths == ["/audiences/create", *["/audiences/update"] * 3, "/audiences/replace"]
    assert [len(body["ids"]) for path, body in w.batch.writes()[1:4]] == [2, 2, 1]
    assert w.limiter.taken == 5  # one slot of the project limiter a call, held until answered
    assert len(w.limiter.answers) == 5
    view = audience_view(store.get(table, "e2"))
    assert view.status == "indexing"
    assert [c.indexing_token for c in view.audience.calls] == ["tok-2", "tok-3", "tok-4"]
    assert (view.audience.calls_made, view.audience.calls_total, view.audience.sequence) == (3, 3, 2)
    assert store.sequence(table, "a1")["released"] == 3


def test_a_message_delivered_again_never_makes_a_call_twice(table: Table) -> None:
    w = World(table)
    w.accept("e1", "create")
    w.send("e1")
    assert w.send("e1") == "nothing to send: indexing"
    assert len(w.batch.calls) == 1
    assert w.queue.polls[-1] == ("e1", 1, 0)  # its follow-up queued again, in case it was lost


def test_a_429_is_retried_after_a_back_off_and_counted(table: Table) -> None:
    w = World(table)
    w.accept("e1", "create")
    w.batch.script = [RateLimited(retry_at=0.0)]
    assert w.send("e1") == "rate limited, re-queued"
    assert w.status("e1") == "queued"
    delay = w.queue.writes[-1][1]
    assert w.queue.writes[-1][0] == "e1"
    assert 0.5 <= delay <= 1.0  # BATCH_RETRY_AFTER_DEFAULT_S, jittered: Batch sends no Retry-After
    w.clock.now += delay
    assert w.send("e1") == "sent, indexing"
    assert audience_view(store.get(table, "e1")).audience.rate_limited == 1


def test_a_refused_write_fails_with_batchs_error_and_releases_the_next(table: Table) -> None:
    w = World(table)
    w.accept("e1", "create")
    w.accept("e2", "remove")
    w.batch.script = [Rejected(400, "AUDIENCE_ALREADY_EXISTS", "audience a1 exists")]
    assert w.send("e1") == "failed"
    details = audience_view(store.get(table, "e1")).audience
    assert (details.error_code, details.error_message, details.upstream_http_status) == (
        "AUDIENCE_ALREADY_EXISTS",
        "audience a1 exists",
        400,
    )
    assert w.queue.writes[-1] == ("e2", 0)
    assert w.send("e2") == "removed"
    assert audience_view(store.get(table, "e2")).audience.ready_at is not None


def test_a_timeout_after_sending_is_ambiguous_unless_resending_is_configured(table: Table) -> None:
    w = World(table)
    w.accept("e1", "create")
    w.batch.script = [Ambiguous("sent, no answer")]
    assert w.send("e1") == "ambiguous"
    other = World(table, batch_resend_ambiguous=True)
    other.accept("e2", "create", name="a2")
    other.batch.script = [Ambiguous("sent, no answer")]
    assert other.send("e2").startswith("unavailable, retry 1")
    assert other.send("e2") == "sent, indexing"


def test_5xx_is_retried_for_batch_retry_for_s_then_failed(table: Table) -> None:
    w = World(table, batch_retry_for_s=60)
    w.accept("e1", "create")
    w.batch.script = [Unavailable(503, "HTTP 503 MAINTENANCE: down")] * 3
    assert w.send("e1") == "unavailable, retry 1"
    w.clock.now += 30
    assert w.send("e1") == "unavailable, retry 2"
    w.clock.now += 31
    assert w.send("e1") == "failed"
    details = audience_view(store.get(table, "e1")).audience
    assert details.error_code == "unavailable"
    assert details.attempts == 3


def test_no_slot_requeues_without_calling(table: Table) -> None:
    w = World(table)
    w.accept("e1", "create")
    w.limiter.open = False
    assert w.send("e1") == "no slot yet, re-queued"
    assert w.batch.calls == []
    assert 1 <= w.queue.writes[-1][1] <= 2
    assert w.status("e1") == "queued"


def test_indexing_is_followed_token_by_token_until_applied(table: Table) -> None:
    w = World(table, batch_indexing_poll_first_s=2, batch_indexing_poll_max_s=5)
    w.accept("e1", "update", entries=adds("u1", "u2", "u3"))
    w.send("e1")
    assert w.queue.polls[-1] == ("e1", 1, 2)
    w.batch.views = ["IN_PROGRESS", "IN_PROCESS", "APPLIED", "REPLACED"]
    assert poll_once("e1", 1, w.deps) == "indexing"
    assert w.queue.polls[-1] == ("e1", 2, 2)
    assert poll_once("e1", 1, w.deps).startswith("stale poll 1")  # delivered again: dropped
    assert poll_once("e1", 2, w.deps) == "indexing"
    assert w.queue.polls[-1] == ("e1", 3, 4)  # doubling
    w.clock.now += 10
    assert poll_once("e1", 3, w.deps) == "indexing"
    assert w.queue.polls[-1] == ("e1", 4, 0)  # the first token is in: the next one at once
    assert poll_once("e1", 4, w.deps) == "applied"
    viewed = [params["indexing_token"] for method, _, params in w.batch.calls if method == "GET"]
    assert viewed == ["tok-1", "tok-1", "tok-1", "tok-2"]
    view = audience_view(store.get(table, "e1"))
    assert view.status == "applied"
    assert view.audience.ready_at is not None
    assert [c.indexing_state for c in view.audience.calls] == ["APPLIED", "REPLACED"]


def test_indexing_that_never_ends_is_given_up_visibly(table: Table) -> None:
    w = World(table, batch_indexing_give_up_s=100)
    w.accept("e1", "create")
    w.send("e1")
    w.clock.now += 101
    assert poll_once("e1", 1, w.deps) == "unconfirmed"
    details = audience_view(store.get(table, "e1")).audience
    assert details.error_code == "indexing_timeout"
    assert "BATCH_INDEXING_GIVE_UP_S" in (details.error_message or "")


def test_waiting_for_indexing_holds_the_next_write_until_the_audience_is_ready(table: Table) -> None:
    w = World(table, batch_audience_wait_for_indexing=True)
    w.accept("e1", "create")
    w.accept("e2", "remove")
    w.send("e1")
    assert w.send("e2").startswith("waiting for write 1")
    w.batch.views = ["APPLIED"]
    assert poll_once("e1", 1, w.deps) == "applied"
    assert w.queue.writes[-1] == ("e2", 0)
    assert w.send("e2") == "removed"


def test_the_reconciler_moves_what_no_message_moves(table: Table) -> None:
    w = World(table, relay_reconcile_after_s=60, batch_audience_stale_sending_s=30)
    w.accept("e1", "create")  # its message lost
    w.accept("e2", "create", name="a2")
    w.accept("e3", "remove", name="a2")  # behind e2
    w.batch.script = []
    w.clock.now += 120
    repairs = reconcile.reconcile(w.deps, w.clock.now, w.clock.now - 60)
    assert repairs == {"BatchAudienceWritesRequeued": 2, "BatchAudienceWritesWaiting": 1}
    assert {e for e, _ in w.queue.writes[-2:]} == {"e1", "e2"}
    # A call claimed and never recorded (its worker died): settled ambiguous, the audience released.
    claimed = {"sending_at": w.clock.now}
    store.transition(
        table, "e2", allowed_from=["queued"], to="sending", now=w.clock.now, fields=claimed, due=w.clock.now
    )
    w.send("e1")
    w.clock.now += 120
    repairs = reconcile.reconcile(w.deps, w.clock.now, w.clock.now - 60)
    # e2 is settled first (its due time sorts first), which releases a2 to e3: e3 is queued too.
    assert repairs == {
        "BatchAudienceCallsSettled": 1,
        "BatchAudiencePollsRequeued": 1,
        "BatchAudienceWritesRequeued": 1,
    }
    assert w.status("e2") == "ambiguous"
    assert w.queue.writes[-2:] == [("e3", 0), ("e3", 0)]  # woken by e2's release, and requeued
    assert ("e1", 1, 0) in w.queue.polls


def test_the_listing_pages_through_batchs_next_from_and_never_waits_long(table: Table) -> None:
    from relay.destinations.batch.audiences.listing import ListUnavailable, list_page

    w = World(table)
    page = {"audiences": [{"name": "a1", "nb_ids": 3}], "count": 2, "has_more": True, "next_from": "a2"}
    w.batch.script = [Accepted(200, page), Accepted(200, {"audiences": [{"name": "a2"}], "has_more": False})]
    first = list_page(w.batch, w.limiter, limit=1, next_token=None, max_wait_s=0)
    assert [a.name for a in first.items] == ["a1"]
    second = list_page(w.batch, w.limiter, limit=1, next_token=first.next_token, max_wait_s=0)
    assert [a.name for a in second.items] == ["a2"]
    assert second.next_token is None
    assert [params for _, _, params in w.batch.calls] == [{"limit": 1}, {"limit": 1, "from": "a2"}]
    assert len(w.limiter.answers) == 2  # each slot held until answered
    with pytest.raises(ValueError, match="next_token"):
        list_page(w.batch, w.limiter, limit=1, next_token="e30", max_wait_s=0)
    w.batch.script = [RateLimited(retry_at=0.0), Rejected(401, "AUTHENTICATION_INVALID", "bad key")]
    for status in (429, 502):
        with pytest.raises(ListUnavailable) as unavailable:
            list_page(w.batch, w.limiter, limit=1, next_token=None, max_wait_s=0)
        assert unavailable.value.status == status
    w.limiter.open = False
    with pytest.raises(ListUnavailable) as busy:
        list_page(w.batch, w.limiter, limit=1, next_token=None, max_wait_s=0)
    assert (busy.value.status, busy.value.code) == (429, "upstream_busy")

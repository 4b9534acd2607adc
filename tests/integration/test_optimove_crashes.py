"""Optimove: a crash at every failpoint between two side effects, then what Lambda, SQS, the API
client and the reconciler would do; the work completes (or ends `unknown` where Optimove may have
it), and the sandbox never sees a second run request for one execution.

``crash_at(name)`` arms the failpoint until it fired; what follows the block is the recovery, on
instances started without it. Queues' visibility timeouts are compressed per test (the relay
fixture re-creates the queues for every test), the reconciler's staleness through
``RELAY_RECONCILE_AFTER_S``; every wait is a condition with a deadline."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import Api, crash_at, dlq_messages, queue_depth, relay_env, wait_for
from relay_local.stack import LocalStack
from test_optimove import FAST, gen, terminal, trigger

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def at(seconds_from_now: float) -> str:
    send_at = time.time() + seconds_from_now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(send_at)) + f".{int(send_at % 1 * 1000):03d}Z"


def runs_of(ov: Any, generator: str) -> list[int]:
    return [r.status for r in ov.runs if r.generator_id == generator]


@pytest.fixture
def ov(relay: LocalStack) -> Iterator[Any]:
    """The sandbox Optimove, reset, quick to publish; Optimove timings compressed (as test_optimove)."""
    sandbox = relay.sandbox_optimove
    sandbox.reset()
    sandbox.queued_s, sandbox.processing_s, sandbox.rps = 0.5, 0.5, 500
    sandbox.failing_generators.clear()
    with relay_env(**FAST):
        yield sandbox
    sandbox.reset()


@pytest.fixture
def quick(relay: LocalStack, sqs: Any, ov: Any) -> Iterator[None]:
    """Redelivery in 2 s rather than minutes, and a reconciler that repairs what is 1 s stale."""
    for queue in ("OptimoveQueue", "PollQueue"):
        relay.set_queue_attributes(queue, VisibilityTimeout="2")
    with relay_env(RELAY_RECONCILE_AFTER_S="1"):
        yield


def item_of(ddb: Any, execution_id: str) -> dict[str, Any]:
    from relay.core.store import codec

    raw = ddb.get_item(
        TableName="RelayTable",
        Key={"pk": {"S": f"EXEC#{execution_id}"}, "sk": {"S": "META"}},
        ConsistentRead=True,
    )
    return codec.load(raw["Item"])


# -- accept: the execution (with its de-duplication key) stored, its message queued ------------------
# Loss path 4: the key was taken and the enqueue never happened; the client's retry with the same
# dedupe_key got `duplicate: true` for a run that never ran. The retry now queues it again.


@pytest.mark.parametrize("retry_with", ["dedupe_key", "idempotency_key"])
@pytest.mark.parametrize("point", ["optimove.accept.after_dedupe", "optimove.accept.after_enqueue"])
def test_accept_crash_the_clients_retry_completes_the_work(
    api: Api, ov: Any, point: str, retry_with: str
) -> None:
    generator, key = gen(), f"k-{uuid.uuid4()}"
    extra: dict[str, Any] = {"dedupe_key": key} if retry_with == "dedupe_key" else {}
    headers = {"Idempotency-Key": key} if retry_with == "idempotency_key" else None
    with crash_at(point):
        failed = trigger(api, generator, expect=None, headers=headers, **extra)
        assert failed.status_code == 500, failed.text
    retry = trigger(api, generator, headers=headers, **extra).json()  # the API client's retry
    assert retry["duplicate"] is (retry_with == "dedupe_key")
    view = api.wait(retry["execution_id"], terminal, timeout=30)
    assert view["status"] == "published", view
    assert runs_of(ov, generator) == [202]


def test_accept_crash_with_no_retry_the_reconciler_queues_the_run(
    api: Api, ov: Any, quick: None, ddb: Any
) -> None:
    """The client never retries: the run waits `queued` with no message until the reconciler
    finds it overdue and queues it again (counted on the run as a repair)."""
    generator = gen()
    with crash_at("optimove.accept.after_dedupe"):
        assert trigger(api, generator, expect=None, dedupe_key=f"k-{uuid.uuid4()}").status_code == 500
    [execution_id] = wait_for(
        lambda: [i["execution_id"] for i in optimove_items(ddb) if i.get("event_generator_id") == generator]
    )
    view = api.wait(execution_id, terminal, timeout=60)
    assert view["status"] == "published", view
    assert item_of(ddb, execution_id)["repairs"] == 1
    assert runs_of(ov, generator) == [202]


def optimove_items(ddb: Any) -> list[dict[str, Any]]:
    from conftest import scan_all
    from relay.core.store import codec

    return [codec.load(i) for i in scan_all(ddb) if i.get("destination", {}).get("S") == "optimove"]


def test_reconcile_counts_repairs_by_kind_and_a_second_look_repairs_nothing(
    api: Api, ov: Any, relay: LocalStack, ddb: Any
) -> None:
    """Optimove.reconcile called in-process as the reconciler would call it an hour from now
    (the stack's own reconciler, at RELAY_RECONCILE_AFTER_S=300, leaves both runs alone): a run
    left queued with no message and a scheduled run whose release never came are repaired once,
    counted by kind; looking again at once repairs nothing (their due times moved on)."""
    from relay.destinations.optimove import DESTINATION

    lost, scheduled = gen(), gen()
    with crash_at("optimove.accept.after_dedupe"):
        assert trigger(api, lost, expect=None, dedupe_key=f"k-{uuid.uuid4()}").status_code == 500
    scheduled_id = trigger(api, scheduled, send_at=at(3600)).json()["execution_id"]
    [lost_id] = wait_for(
        lambda: [i["execution_id"] for i in optimove_items(ddb) if i["event_generator_id"] == lost]
    )
    emitted: list[tuple[str, float]] = []
    now = time.time() + 4000
    with relay.pollers.paused():  # nothing consumes the repairs' messages while we look
        first = DESTINATION.reconcile(now, now - 300, lambda name, value: emitted.append((name, value)))
        again = DESTINATION.reconcile(now, now - 300, lambda name, value: emitted.append((name, value)))
        # The scheduled one was released an hour early only because we moved the clock: cancel it.
        assert api.http.delete(f"/v1/executions/{scheduled_id}").status_code == 200
    assert first == {"OptimoveRunsRequeued": 1, "OptimoveScheduledReleased": 1}
    assert again == {}
    view = api.wait(lost_id, terminal, timeout=30)
    assert view["status"] == "published", view
    assert item_of(ddb, lost_id)["repairs"] == 1
    assert runs_of(ov, lost) == [202]
    assert runs_of(ov, scheduled) == []


# -- scheduled release: message queued (delayed to send_at), then scheduled -> queued -----------------
# Loss path 3: it used to move to `queued` (leaving the schedule index) before queueing the message.


def test_release_crash_the_scheduled_run_is_still_sent_once(api: Api, ov: Any, quick: None) -> None:
    generator = gen()
    answer = trigger(api, generator, send_at=at(8)).json()
    assert answer["status"] == "scheduled"
    with crash_at("optimove.release.after_enqueue"):
        pass  # the stack's scheduler runs every few seconds; the trigger is due within its lookahead
    view = api.wait(answer["execution_id"], terminal, timeout=60)
    assert view["status"] == "published", view
    assert runs_of(ov, generator) == [202]


# -- cancel of a scheduled run: its one write, then the answer ----------------------------------------


def test_cancel_crash_the_run_stays_cancelled_and_is_never_sent(
    api: Api, ov: Any, relay: LocalStack, ddb: Any
) -> None:
    generator = gen()
    execution_id = trigger(api, generator, send_at=at(3600)).json()["execution_id"]
    with crash_at("optimove.cancel.after_cancelled"):
        assert api.http.delete(f"/v1/executions/{execution_id}").status_code == 500
    retry = api.http.delete(f"/v1/executions/{execution_id}")  # the client's retry
    assert retry.status_code == 409
    assert "cancelled" in retry.json()["error"]["message"]
    # Off every index (nothing will release or repair it), and two scheduler runs later unsent.
    assert not {"gsi2pk", "gsi2sk", "due_at"} & item_of(ddb, execution_id).keys()
    runs = relay.schedules.runs
    wait_for(lambda: relay.schedules.runs >= runs + 2, timeout=30, what="two scheduler runs")
    assert api.execution(execution_id)["status"] == "cancelled"
    assert runs_of(ov, generator) == []


# -- send: slot -> queued -> sending -> call -> (first poll queued -> accepted) | (queued -> message) ----

# (failpoint, what recovers it, final status, the sandbox's answers to the run requests)
SEND_CRASHES = [
    # slot taken, still queued: SQS redelivers the message, which sends it.
    ("optimove.send.after_slot", "redelivery", "published", [202]),
    # claimed, never called: it may look as if Optimove has it; settled unknown, never re-sent.
    ("optimove.send.after_claim", "reconciler", "unknown", []),
    # called, the 202 lost with the worker: Optimove has it; unknown, never re-sent.
    ("optimove.send.after_call", "reconciler", "unknown", [202]),
    # first poll queued with Optimove's id, 202 not recorded: the poll records it and follows it.
    ("optimove.send.after_poll_enqueue", "first poll", "published", [202]),
    # all recorded: the redelivered message finds `accepted` and does nothing.
    ("optimove.send.after_record", "redelivery", "published", [202]),
]


@pytest.mark.parametrize(("point", "recovery", "status", "answers"), SEND_CRASHES)
def test_send_crash_completes_or_ends_unknown_never_sent_twice(
    api: Api, ov: Any, relay: LocalStack, sqs: Any, point: str, recovery: str, status: str, answers: list[int]
) -> None:
    for queue in ("OptimoveQueue", "PollQueue"):
        relay.set_queue_attributes(queue, VisibilityTimeout="2")
    generator = gen()
    with crash_at(point):
        answer = trigger(api, generator).json()
    with relay_env(RELAY_RECONCILE_AFTER_S="1" if recovery == "reconciler" else "300"):
        view = api.wait(answer["execution_id"], terminal, timeout=60)
    assert view["status"] == status, view
    if status == "unknown":
        assert view["optimove"]["error_code"] == "send_interrupted"
    assert runs_of(ov, generator) == answers
    if recovery == "first poll":
        assert any("first status poll" in (t.get("note") or "") for t in view["transitions"])


@pytest.mark.parametrize("upstream", [500, 429])
def test_send_crash_after_requeue_the_reconciler_queues_it_again(
    api: Api, ov: Any, ddb: Any, upstream: int
) -> None:
    """A 5xx (or 429) put the run back to queued; the worker died before queueing its retry. Its
    message comes back after the queue's visibility timeout (360 s, not compressed here); the
    reconciler is quicker: the run's retry is overdue."""
    generator = gen()
    ov.fail_next(upstream, headers={"Retry-After": "1"}, generator_id=generator)
    with crash_at("optimove.send.after_requeue"):
        answer = trigger(api, generator).json()
    with relay_env(RELAY_RECONCILE_AFTER_S="1"):
        view = api.wait(answer["execution_id"], terminal, timeout=60)
    assert view["status"] == "published", view
    assert runs_of(ov, generator) == [upstream, 202]
    assert item_of(ddb, answer["execution_id"])["repairs"] >= 1


def test_send_crash_after_dead_lettered_the_redelivered_message_parks_it(
    api: Api, ov: Any, relay: LocalStack, sqs: Any, quick: None
) -> None:
    """The last attempt failed (5xx): `dead_lettered` was recorded, the worker died before parking
    the run in the dead-letter queue. The redelivered message parks it; an operator re-drives it."""
    from relay_ops import dlq as relay_dlq

    generator = gen()
    ov.fail_next(500, generator_id=generator)
    dlq = relay.resources.url("OptimoveDeadLetterQueue")
    with relay_env(OPTIMOVE_MAX_ATTEMPTS="1"):
        with crash_at("optimove.send.after_dead_lettered"):
            answer = trigger(api, generator).json()
        execution_id = answer["execution_id"]
        assert api.wait(execution_id, terminal, timeout=30)["status"] == "dead_lettered"
        parked = lambda: [m for m in dlq_messages(sqs, dlq) if m.get("execution_id") == execution_id]  # noqa: E731
        assert (
            wait_for(parked, timeout=30, what="the run parked in the dead-letter queue")[0]["kind"]
            == "dead_send"
        )
    assert relay_dlq.main(["redrive", "--queue", "optimove"]) == 0
    view = api.wait(execution_id, lambda v: v["status"] == "published", timeout=30)
    assert any("re-driven" in (t.get("note") or "") for t in view["transitions"])
    assert runs_of(ov, generator) == [500, 202]


# -- poll: status read -> terminal status | next read (poll_seq) -> its message ----------------------


@pytest.mark.parametrize(
    ("point", "processing_s", "reconciler"),
    [
        # read, nothing recorded: SQS redelivers the poll, which reads again.
        ("optimove.poll.after_call", 0.5, False),
        # terminal status recorded, not yet forwarded: the redelivered poll forwards it again.
        ("optimove.poll.after_terminal", 0.5, False),
        # chain moved on (poll_seq), next read not queued: the reconciler queues it (it is overdue).
        ("optimove.poll.after_advance", 4.0, True),
    ],
)
def test_poll_crash_the_run_is_still_followed_to_its_end(
    api: Api,
    ov: Any,
    relay: LocalStack,
    sqs: Any,
    ddb: Any,
    point: str,
    processing_s: float,
    reconciler: bool,
) -> None:
    relay.set_queue_attributes("PollQueue", VisibilityTimeout="2")
    ov.processing_s = processing_s
    generator = gen()
    with crash_at(point):
        answer = trigger(api, generator).json()
    with relay_env(RELAY_RECONCILE_AFTER_S="1" if reconciler else "300"):
        view = api.wait(answer["execution_id"], terminal, timeout=60)
    assert view["status"] == "published", view
    assert runs_of(ov, generator) == [202]
    assert ("repairs" in item_of(ddb, answer["execution_id"])) is reconciler


# -- loss path 8: a redelivered (or duplicated) poll never starts a second chain ----------------------


def test_redelivered_polls_never_multiply_the_chain(
    api: Api, ov: Any, relay: LocalStack, sqs: Any, ddb: Any
) -> None:
    """Three extra deliveries of the chain's current poll (what a timed-out batch's redelivery
    is): one of them moves the chain on, the others and the original are dropped, so the run's
    status reads stay one per step of its one chain."""
    import json

    ov.processing_s = 3600  # followed until we say
    generator = gen()
    execution_id = trigger(api, generator).json()["execution_id"]
    reads = lambda: int(item_of(ddb, execution_id).get("polls") or 0)  # noqa: E731 - reads recorded
    wait_for(lambda: reads() >= 1, timeout=30, what="the first read")
    current = reads() + 1  # the read the chain makes next
    message = {"kind": "poll", "destination": "optimove", "execution_id": execution_id, "attempt": current}
    queue = relay.resources.url("PollQueue")
    for _ in range(3):
        sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(message))
    wait_for(lambda: reads() >= current + 5, timeout=60, what="five more reads")
    ov.processing_s = 0  # published from now on
    view = api.wait(execution_id, terminal, timeout=30)
    assert view["status"] == "published"
    wait_for(lambda: queue_depth(sqs, queue) == 0, timeout=30, what="the poll chain to end")
    steps = reads() + 1  # the last read saw `published`
    # One read per step of the one chain, plus at most one for each extra delivery that raced the
    # step it duplicated; four chains would read about four times as often.
    assert ov.status_reads <= steps + 3, (ov.status_reads, steps)
    assert runs_of(ov, generator) == [202]

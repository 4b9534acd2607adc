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
from conftest import Api, crash_at, relay_env
from relay_local.stack import LocalStack
from test_optimove import FAST, gen, ov, terminal, trigger  # noqa: F401 - ov is a fixture

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]


def at(seconds_from_now: float) -> str:
    send_at = time.time() + seconds_from_now
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(send_at)) + f".{int(send_at % 1 * 1000):03d}Z"


def runs_of(ov: Any, generator: str) -> list[int]:
    return [r.status for r in ov.runs if r.generator_id == generator]


@pytest.fixture
def quick(relay: LocalStack, sqs: Any, ov: Any) -> Iterator[None]:
    """Redelivery in 2 s rather than minutes, and a reconciler that repairs what is 1 s stale."""
    for queue in ("OptimoveQueue", "PollQueue"):
        sqs.set_queue_attributes(QueueUrl=relay.resources.url(queue), Attributes={"VisibilityTimeout": "2"})
    with relay_env(RELAY_RECONCILE_AFTER_S="1"):
        yield


# -- loss path 4: accepted, de-duplication key taken, enqueue failed --------------------------------


@pytest.mark.parametrize("retry_with", ["dedupe_key", "idempotency_key"])
def test_accept_crash_after_dedupe_the_clients_retry_completes_the_work(
    api: Api, ov: Any, retry_with: str
) -> None:
    generator, key = gen(), f"k-{uuid.uuid4()}"
    extra: dict[str, Any] = {"dedupe_key": key} if retry_with == "dedupe_key" else {}
    headers = {"Idempotency-Key": key} if retry_with == "idempotency_key" else None
    with crash_at("optimove.accept.after_dedupe"):
        failed = trigger(api, generator, expect=None, headers=headers, **extra)
        assert failed.status_code == 500, failed.text
    retry = trigger(api, generator, headers=headers, **extra).json()  # the API client's retry
    assert retry["duplicate"] is (retry_with == "dedupe_key")
    view = api.wait(retry["execution_id"], terminal, timeout=30)
    assert view["status"] == "published", view
    assert runs_of(ov, generator) == [202]


# -- loss path 3: a scheduled run released, its message never sent ---------------------------------


def test_release_crash_the_scheduled_run_is_still_sent_once(api: Api, ov: Any, quick: None) -> None:
    generator = gen()
    answer = trigger(api, generator, send_at=at(8)).json()
    assert answer["status"] == "scheduled"
    with crash_at("optimove.release.after_queued"):
        pass  # the stack's scheduler runs every few seconds; the trigger is due within its lookahead
    view = api.wait(answer["execution_id"], terminal, timeout=60)
    assert view["status"] == "published", view
    assert runs_of(ov, generator) == [202]

"""Pure parts of the Optimove path: the bucket limiter's guarantee, schema strictness and
messages, send_at time zones, backoff, forwarding, and the sandbox's status progression."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import pytest
from pydantic import ValidationError
from relay.core.backoff import full_jitter as backoff_s
from relay.core.limiter import per_second
from relay.core.limiter.buckets import plan
from relay.core.limiter.log_store import LogLimiter
from relay.core.limiter.sliding_log import Log
from relay.destinations.optimove.models import OptimoveTrigger
from relay.destinations.optimove.results import forward_result, result_message
from relay.destinations.optimove.schemas import _validator, explain, strict
from relay.destinations.optimove.settings import OptimoveSettings as Settings
from relay_local.sandbox_optimove import SandboxOptimove


@pytest.mark.parametrize("rps", [2, 3, 10, 50, 120, 500])
def test_bucket_plan_never_exceeds_rps_in_any_aligned_window(rps: int) -> None:
    p = plan(rps, 0.05)
    assert p is not None
    assert (p.per_second + 1) * p.quota <= rps
    # Worst case: every bucket filled, each send anywhere inside its bucket.
    rng = random.Random(rps)
    sends = sorted((b + rng.random()) * p.width_s for b in range(5 * p.per_second) for _ in range(p.quota))
    for _ in range(2000):
        start = rng.uniform(0, 4)
        assert sum(1 for t in sends if start <= t < start + 1) <= rps
    if rps >= 50:
        assert p.throughput >= 0.9 * rps


@pytest.mark.parametrize("rps", [0.5, 1, 1.5, 1.99])
def test_below_two_a_second_no_bucket_plan_exists_and_the_sliding_log_holds_any_window(rps: float) -> None:
    # Two adjacent buckets of quota 1 can put two requests in one second: buckets cannot do 1/s
    # (Batch.com's limit). The limiter falls back to a sliding log; its slots keep any window.
    assert plan(rps, 0.05) is None
    limiter = per_second(None, "x", rps)  # type: ignore[arg-type]
    assert isinstance(limiter, LogLimiter)
    rule, log, sends = limiter.rule, Log(), []
    now = 0.0
    for _ in range(20):
        at = log.next_slot(rule, now)
        log = log.with_hits(rule, at).settled(at, [at])
        sends.append(at)
        now = at
    window = 1.0
    allowed = math.floor(rps) if rps >= 1 else 1
    for start in [s - 1e-9 for s in sends] + [s + 0.5 for s in sends]:
        assert sum(1 for t in sends if start <= t < start + window) <= allowed
    assert sends[-1] - sends[0] <= 19 * max(1.0, 1 / rps) + 1e-6  # and no slower than the limit


def test_plan_figures() -> None:
    assert plan(50, 0.05).throughput == 45
    assert plan(500, 0.05).throughput == 475


SCHEMA = {
    "type": "object",
    "required": ["team"],
    "properties": {"team": {"type": "string"}, "meta": {"type": "object", "properties": {"a": {}}}},
}


def errors(schema: dict[str, Any], context: dict[str, Any]) -> list[Any]:
    validator = _validator(json.dumps(schema, sort_keys=True))
    return [d for e in validator.iter_errors(context) for d in explain(e)]


def test_unknown_fields_rejected_recursively_unless_allowed() -> None:
    assert strict(SCHEMA)["additionalProperties"] is False
    assert strict(SCHEMA)["properties"]["meta"]["additionalProperties"] is False
    [detail] = errors(SCHEMA, {"team": "x", "teem": "typo"})
    assert detail.field == "context.teem"
    assert detail.type == "unknown_field"
    [nested] = errors(SCHEMA, {"team": "x", "meta": {"b": 1}})
    assert nested.field == "context.meta.b"
    assert errors({**SCHEMA, "additionalProperties": True}, {"team": "x", "teem": 1}) == []


def test_missing_and_wrong_type_name_the_field() -> None:
    [missing] = errors(SCHEMA, {})
    assert (missing.field, missing.type) == ("context.team", "missing_field")
    [wrong] = errors(SCHEMA, {"team": 3})
    assert wrong.field == "context.team"
    assert "string" in wrong.message


def test_send_at_local_time_and_dst() -> None:
    base = {"event_generator_id": "g", "topic_key": "t", "context": {}}
    ok = OptimoveTrigger(**base, send_at="2031-01-10T12:00:00", timezone="America/New_York")
    assert ok.send_at is not None
    assert ok.send_at.isoformat() == "2031-01-10T17:00:00+00:00"
    with pytest.raises(ValidationError, match="does not exist"):
        OptimoveTrigger(**base, send_at="2031-03-09T02:30:00", timezone="America/New_York")
    with pytest.raises(ValidationError, match="ambiguous"):
        OptimoveTrigger(**base, send_at="2031-11-02T01:30:00", timezone="America/New_York")
    with pytest.raises(ValidationError, match="unknown IANA"):
        OptimoveTrigger(**base, send_at="2031-11-02T01:30:00", timezone="Mars/Olympus")
    with pytest.raises(ValidationError, match="past"):
        OptimoveTrigger(**base, send_at="2001-01-01T00:00:00Z")


def test_backoff_grows_is_jittered_and_bounded() -> None:
    random.seed(1)
    values = [backoff_s(a, 2, 300) for a in range(1, 12) for _ in range(20)]
    assert all(1 <= v <= 300 for v in values)
    assert max(backoff_s(10, 2, 300) for _ in range(50)) > 100
    assert len({round(backoff_s(5, 2, 300), 3) for _ in range(20)}) > 10


class FakeSqs:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_message(self, **kwargs: Any) -> None:
        self.sent.append(kwargs)


ITEM = {
    "execution_id": "e1",
    "status": "published",
    "created_at": 1.0,
    "updated_at": 2.0,
    "audience_size": 7,
    "event_generator_id": "g",
}


def test_forward_result_only_when_configured() -> None:
    sqs = FakeSqs()
    assert forward_result(ITEM, Settings(), sqs) is False
    settings = Settings(results_webhook_url="http://x", results_queue_url="q")
    assert forward_result(ITEM, settings, sqs) is True
    body = json.loads(sqs.sent[0]["MessageBody"])
    assert body == result_message(ITEM)
    assert body["type"] == "optimove.published"
    assert body["audience_size"] == 7
    off = Settings(results_webhook_url="http://x", results_queue_url="q", optimove_forward_results=False)
    assert forward_result(ITEM, off, sqs) is False


def test_sandbox_status_progression_and_limit() -> None:
    sandbox = SandboxOptimove(api_key="k", brand_key="b", rps=2, queued_s=1, processing_s=1)
    headers = {"x-api-key": "k", "x-brand-key": "b"}
    status, _, body = sandbox.handle(
        "POST", "/event-generators/g/run", headers, b'{"topic_key":"t","context":{}}'
    )
    assert status == 202
    assert body["status"] == "queued"
    execution = sandbox.executions[body["execution_id"]]
    t0 = execution.created_at
    assert sandbox.status_of(execution, t0 + 0.5)["status"] == "queued"
    assert sandbox.status_of(execution, t0 + 1.5)["status"] == "processing"
    done = sandbox.status_of(execution, t0 + 2.5)
    assert done["status"] == "published"
    assert done["audience_size"] >= 1000
    assert sandbox.handle("POST", "/event-generators/g/run", {"x-api-key": "no"}, b"{}")[0] == 401
    limited = sandbox.handle("POST", "/event-generators/g/run", headers, b"{}")
    assert limited[0] == 429
    assert limited[1]["Retry-After"] == "1"
    assert sandbox.max_in_any_window() == 2
    assert math.isclose(sandbox.rps, 2)


def test_a_slot_holds_only_while_its_request_can_be_made_in_time() -> None:
    # Buckets: a request must be made inside the bucket whose slot it took; a log slot, promptly.
    now = [10.02]
    bucket = per_second(None, "x", 10, clock=lambda: now[0])  # type: ignore[arg-type]
    width = bucket.plan.width_s
    assert bucket.still_valid(10.02)
    now[0] = (math.floor(10.02 / width) + 1) * width  # the next bucket has begun
    assert not bucket.still_valid(10.02)
    log = per_second(None, "y", 1, clock=lambda: now[0])  # type: ignore[arg-type]
    assert log.still_valid(now[0] - 0.01)
    assert not log.still_valid(now[0] - 0.5)

"""Optimized.app results mirrored onto Batch.com profiles: 5,000 results -> Batch calls made and
updates per second, against the local stack and the sandbox Batch server.

Each result goes the whole way: a signed webhook (bodies of 500 events), the deliver worker links
it to its input profile (links seeded as the Optimized.app dispatcher writes them), records it and
hands its operation to the Batch profile-update path, whose dispatcher packs operations of many
results into calls of at most 200 under the updates limiter (300 updates/s, burst 1,000 - the
documented limits, not compressed: the sandbox enforces the same).

Two runs:

- **stream**: results mirrored as they are recorded (the dispatcher lingers
  BATCH_DISPATCH_LINGER_S for more before a part-filled call): calls made, operations a call,
  results/s end to end (first webhook -> last event on Batch). The emulator's DynamoDB (a few
  hundred operations a second, each result needs several) bounds this, not Batch's limit.
- **backlog**: the same results recorded while the Batch dispatcher is held (as after a Batch
  outage), then released: calls made against the target ceil(N / 200), and the updates/s Batch
  saw from the first call to the last; achieved/ceiling is the fastest the limiter allows for
  them (the burst of 1,000 at once, then 300 a second) over the time they took.

    .venv/bin/python -m bench mirror          (or: python -m bench.bench_mirror [results])
"""

from __future__ import annotations

import base64
import json
import math
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from bench.common import api_client, quiet_stack, wait_until

DEFAULT_RESULTS = 5_000
BODY = 500  # events a webhook request
SECRET = "whsec_" + base64.b64encode(b"mirror-bench-secret-mirror-bench").decode()
UPDATES_PER_S, BURST, PER_CALL = 300.0, 1000, 200


def _seed(stack: Any, n: int, tag: str) -> list[str]:
    """An execution of one profile sent upstream, and links of ``n`` more of its profiles (as its
    dispatcher writes them when their batches are sent)."""
    from relay.core.store import codec
    from relay_local import aws

    with api_client(stack) as client:
        group = str(uuid.uuid4())
        body = {"group_id": group, "profiles": [{"person": {"phone_number": "+358400000000"}, "ref": "seed"}]}
        execution_id = client.post("/v1/optimized/triggers", json=body).json()["execution_id"]
        wait_until(lambda: client.get(f"/v1/executions/{execution_id}").json()["status"] == "completed", 60)
    ddb = aws.client("dynamodb", stack.moto_endpoint, stack.region)
    uuids = [str(uuid.uuid4()) for _ in range(n)]
    items = [
        codec.dump(
            {
                "pk": f"LINK#profile#{u}",
                "sk": "LINK",
                "execution_id": execution_id,
                "chunk_seq": 0,
                "profile_index": i,
                "ref": f"{tag}-{i}",
                "profile_uuid": u,
            }
        )
        for i, u in enumerate(uuids)
    ]
    for start in range(0, n, 25):
        ddb.batch_write_item(
            RequestItems={"LinksTable": [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]}
        )
    return uuids


def _post_all(stack: Any, uuids: list[str], tag: str) -> None:
    import httpx
    from relay.results.signatures import standard_headers

    def post(start: int) -> None:
        events = [
            {"id": f"{tag}-{i}", "type": "sms.delivered", "profile": {"uuid": u}}
            for i, u in enumerate(uuids[start : start + BODY], start)
        ]
        body = json.dumps(events).encode()
        headers = {"content-type": "application/json"}
        headers |= standard_headers(SECRET, f"msg_{uuid.uuid4().hex}", int(time.time()), body)
        answer = httpx.post(
            f"{stack.api_url}/v1/webhooks/optimized", content=body, headers=headers, timeout=60
        )
        answer.raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(post, range(0, len(uuids), BODY)))


def _events_on_batch(stack: Any, tag: str) -> int:
    return sum(
        len(p["events"])
        for key, p in dict(stack.sandbox_batch.profiles).items()
        if key.startswith(f"custom_id:{tag}-")
    )


@contextmanager
def _held(stack: Any):
    from relay_local import aws

    url = stack.resources.url("BatchQueue")
    [poller] = [p for p in stack.pollers.pollers if p.queue_url == url]
    sqs = aws.client("sqs", stack.moto_endpoint, stack.region)
    poller.pause()
    try:
        yield sqs
    finally:
        poller.resume()


def _queue_empty(sqs: Any, url: str) -> bool:
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(v) for v in attributes.values()) == 0


def _calls(stack: Any, since: float) -> list[Any]:
    return [c for c in stack.sandbox_batch.profile_calls(status=None) if c.arrived_at >= since]


def run_stream(stack: Any, n: int) -> dict[str, Any]:
    tag = f"s{uuid.uuid4().hex[:6]}"
    uuids = _seed(stack, n, tag)
    started = time.time()
    _post_all(stack, uuids, tag)
    done = wait_until(lambda: _events_on_batch(stack, tag) >= n, timeout_s=max(300, n / 5), every_s=0.5)
    elapsed = time.time() - started
    calls = _calls(stack, started)
    ok = [c for c in calls if c.status == 202]
    return {
        "mirrored": _events_on_batch(stack, tag),
        "done": done,
        "seconds": elapsed,
        "calls": len(ok),
        "per_call": sum(c.operations for c in ok) / max(1, len(ok)),
        "http_429": sum(1 for c in calls if c.status == 429),
    }


def run_backlog(stack: Any, n: int) -> dict[str, Any]:
    tag = f"b{uuid.uuid4().hex[:6]}"
    uuids = _seed(stack, n, tag)
    started = time.time()
    with _held(stack) as sqs:
        _post_all(stack, uuids, tag)
        results_queue = stack.resources.url("ResultsQueue")
        wait_until(lambda: _queue_empty(sqs, results_queue), timeout_s=max(300, n / 5), every_s=0.5)
        recorded_s = time.time() - started
    released = time.time()
    done = wait_until(lambda: _events_on_batch(stack, tag) >= n, timeout_s=max(180, n / 5), every_s=0.2)
    calls = _calls(stack, released)
    ok = [c for c in calls if c.status == 202]
    span = (ok[-1].arrived_at - ok[0].arrived_at) if len(ok) > 1 else 0.0
    updates = sum(c.updates for c in ok)
    # The fastest the limiter allows: the burst at once (from a full bucket), then UPDATES_PER_S a
    # second - so the last call can come (updates - burst) / rate after the first, no sooner.
    fastest_span = max(0.0, (updates - BURST) / UPDATES_PER_S)
    return {
        "mirrored": _events_on_batch(stack, tag),
        "done": done,
        "recorded_s": recorded_s,
        "calls": len(ok),
        "target_calls": math.ceil(n / PER_CALL),
        "updates_per_s": updates / span if span else float("nan"),
        "ratio": fastest_span / span if fastest_span and span else float("nan"),
        "http_429": sum(1 for c in calls if c.status == 429),
        "release_to_done_s": time.time() - released,
    }


def main(results: int = DEFAULT_RESULTS) -> None:
    print(
        f"== Results mirrored onto Batch.com: {results:,} results, {UPDATES_PER_S:g} updates/s,"
        f" burst {BURST:,} =="
    )
    env = {
        "WEBHOOK_SECRET": SECRET,
        "BATCH_MIRROR_RESULTS": "true",
        "BATCH_PROFILE_UPDATES_PER_S": str(UPDATES_PER_S),
        "BATCH_PROFILE_UPDATES_BURST": str(BURST),
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }
    os.environ.pop("BATCH_API_URL", None)  # always the sandbox: it counts what it receives
    with quiet_stack(env) as stack:
        stream = run_stream(stack, results)
        print(
            f"stream   {stream['mirrored']:,}/{results:,} mirrored in {stream['seconds']:.1f} s "
            f"({stream['mirrored'] / stream['seconds']:.0f} results/s end to end), {stream['calls']} calls "
            f"({stream['per_call']:.0f} operations each; ceil(N/200) = {math.ceil(results / PER_CALL)}), "
            f"429s {stream['http_429']}",
            flush=True,
        )
        stack.sandbox_batch.reset()
        backlog = run_backlog(stack, results)
        print(
            f"backlog  {backlog['mirrored']:,}/{results:,} mirrored: {backlog['calls']} calls (target "
            f"{backlog['target_calls']}), {backlog['updates_per_s']:.0f} updates/s from the first call to "
            f"the last, achieved/ceiling {backlog['ratio']:.3f} (nan: all within the burst), "
            f"429s {backlog['http_429']}, "
            f"{backlog['release_to_done_s']:.1f} s from release to the last event "
            f"(recorded in {backlog['recorded_s']:.1f} s while held)",
            flush=True,
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_RESULTS)

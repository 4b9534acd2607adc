"""Batch.com profile updates: 10,000 operations as 10,000 single-operation triggers and as one
trigger, against the sandbox Batch, which enforces /profiles/update's token bucket (rate, burst;
429 without Retry-After over it) and 200 operations a call.

Triggers are accepted in-process through the accept entry point (the API's code path minus HTTP
and validation) while the dispatcher is paused, so the burst is waiting at once; the dispatch
phase (SQS -> batch function -> sandbox) is what is measured. One operation in 50 carries an
event name Batch refuses, so every call comes back SUCCESS_WITH_PARTIAL_ERRORS and each refusal
must land on its own execution, index and ref. Figures: achieved updates/s against the
configured ceiling (compressed, since one moto process cannot keep up with 300/s of claims and
records, and at the documented 300/s, 1,000 burst), calls made vs ceil(operations / 200), 429s,
partial errors mapped.

    .venv/bin/python -m bench batch          (BENCH_BATCH_OPERATIONS=600 for a quick look)
"""

from __future__ import annotations

import math
import os
import time
import uuid
from typing import Any

from bench.common import quiet_stack, wait_until

OPERATIONS = int(os.environ.get("BENCH_BATCH_OPERATIONS", "10000"))
# (updates/s, burst): compressed to what the emulator can claim and record, then documented.
# (shape, updates/s, burst). Compressed where one moto process cannot keep up: it claims and
# records ~20 single-operation chunks a second (a call of 200 is ~8 transactions of 100 items), and
# a call of one trigger's operations far faster. Each burst keeps a capacity >= 200 after the 1 s
# slack (see relay.core.limiter.token_bucket). The documented 300/s, 1,000 burst last.
RUNS = (("single", 15.0, 220), ("one", 30.0, 250), ("one", 300.0, 1000))
BAD_EVERY = 50


def operation(i: int) -> dict[str, Any]:
    op: dict[str, Any] = {"identifiers": {"custom_id": f"bench-{i}"}, "attributes": {"n": i}}
    if i % BAD_EVERY == 0:
        op["events"] = [{"name": "Refused-By-Batch"}]
    return op


def recorded(stack: Any) -> tuple[int, list[tuple[str, int, str | None]]]:
    """(chunks not yet recorded, every partial error recorded on a chunk as (execution, index, ref))."""
    from relay.core import wiring

    table = wiring.table()
    found: list[tuple[str, int, str | None]] = []
    waiting = 0
    kwargs: dict[str, Any] = {"TableName": table.name}
    from relay.core.store import codec

    while True:
        page = table.client.scan(**kwargs)
        for raw in page.get("Items", []):
            item = codec.load(raw)
            waiting += item.get("kind") == "chunk" and item.get("status") in ("pending", "sending")
            for error in item.get("errors") or []:
                found.append((item["execution_id"], int(error["index"]), error.get("ref")))
        if "LastEvaluatedKey" not in page:
            return waiting, found
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def run(shape: str, n: int, rate: float, burst: int) -> dict[str, Any]:
    env = {
        "BATCH_PROFILE_UPDATES_PER_S": str(rate),
        "BATCH_PROFILE_UPDATES_BURST": str(burst),
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    os.environ.pop("BATCH_API_URL", None)  # always the sandbox: it counts what it receives
    with quiet_stack(env, poller_workers=4) as stack:
        from relay.destinations.batch.accept import accept_operations, default_deps

        sandbox = stack.sandbox_batch
        deps = default_deps()
        started = time.monotonic()
        with stack.pollers.paused():
            if shape == "single":
                for i in range(n):
                    accept_operations(
                        [operation(i)], execution_id=f"b-{i}", origin="bench", refs=[f"r{i}"], deps=deps
                    )
            else:
                accept_operations(
                    [operation(i) for i in range(n)],
                    execution_id=str(uuid.uuid4()),
                    origin="bench",
                    refs=[f"r{i}" for i in range(n)],
                    deps=deps,
                )
        accepted_s = time.monotonic() - started
        delivered = lambda: sum(c.operations for c in sandbox.profile_calls())  # noqa: E731
        wait_until(lambda: delivered() >= n, timeout_s=n / 5 + 120)
        wait_until(lambda: recorded(stack)[0] == 0, timeout_s=120, every_s=1.0)
        time.sleep(2)  # anything late (a duplicate) would show up now
        calls = sandbox.profile_calls()
        arrivals = sorted((c.arrived_at, c.updates) for c in calls)
        span = arrivals[-1][0] - arrivals[0][0] if len(arrivals) > 1 else float("nan")
        capacity = burst - rate * deps.settings.batch_updates_slack_s
        refused = sum(c.partial_errors for c in calls)
        errors = recorded(stack)[1]
        expected = {
            (f"b-{i}" if shape == "single" else None, i if shape != "single" else 0, f"r{i}")
            for i in range(0, n, BAD_EVERY)
        }
        right = sum(1 for e in errors if (e[0] if shape == "single" else None, e[1], e[2]) in expected)
        return {
            "accepted_s": accepted_s,
            "span": span,
            # Updates after the first call over the time they took: the first call's are the burst.
            "achieved": sum(u for _, u in arrivals) / span if span else float("nan"),
            # What the bucket allowed beyond its capacity: the steady rate, the burst taken out.
            "steady": (sum(u for _, u in arrivals) - capacity) / span if span else float("nan"),
            "calls": len(calls),
            "http_429": sandbox.rate_limited,
            "refused": refused,
            "mapped": right,
            "delivered": delivered(),
        }


def main() -> None:
    n = OPERATIONS
    for shape, rate, burst in RUNS:
        r = run(shape, n, rate, burst)
        what = f"{n} single-operation triggers" if shape == "single" else f"one trigger of {n} operations"
        print(f"Batch profile updates: {what}, BATCH_PROFILE_UPDATES_PER_S={rate:g}, burst {burst}")
        print(f"  accepted in-process in       {r['accepted_s']:.1f} s")
        print(f"  dispatch phase               {r['span']:.1f} s")
        steady = (
            f"steady rate without the burst {r['steady']:.1f}/s, ratio {r['steady'] / rate:.2f}"
            if r["steady"] > 0
            else "all within the burst"
        )
        print(f"  achieved updates/s           {r['achieved']:.1f}  (ceiling {rate:g}/s; {steady})")
        print(f"  calls made                   {r['calls']}  (ceil(operations / 200): {math.ceil(n / 200)})")
        print(f"  429 answers                  {r['http_429']}")
        print(
            f"  partial errors mapped        {r['mapped']} / {r['refused']} refused by Batch "
            f"({100 * r['mapped'] / max(1, r['refused']):.0f} %)"
        )
        print(f"  operations delivered         {r['delivered']} / {n}")


if __name__ == "__main__":
    main()

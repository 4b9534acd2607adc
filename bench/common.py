"""Shared helpers: a local stack with compressed limits, a client, percentiles."""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]


@contextmanager
def quiet_stack(env: dict[str, str], *, poller_workers: int = 16) -> Iterator[Any]:
    """A LocalStack with the given settings and logs at WARNING (benchmarks print their own)."""
    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")
    os.environ["POWERTOOLS_METRICS_DISABLED"] = "true"
    os.environ.pop("OPTIMIZED_API_URL", None)  # always the sandbox: it counts what it receives
    from relay_local.stack import LocalStack

    with LocalStack(str(REPO / "template.yaml"), api_port=0, env=env, poller_workers=poller_workers) as stack:
        yield stack


def api_client(stack: Any) -> httpx.Client:
    return httpx.Client(
        base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key}"}, timeout=120
    )


def wait_until(predicate: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every_s)
    return predicate()


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[max(0, min(98, int(pct) - 1))]


def failpoint_off_ns(calls: int = 1_000_000) -> float:
    """What one failpoint costs when RELAY_FAILPOINTS arms nothing (the production case), in ns."""
    import timeit

    from relay.core import failpoints

    saved = os.environ.pop(failpoints.ENV, None)
    failpoints.reset()
    try:
        loop = timeit.timeit("pass", number=calls)
        total = timeit.timeit(
            "failpoint('bench.point')", globals={"failpoint": failpoints.failpoint}, number=calls
        )
    finally:
        if saved is not None:
            os.environ[failpoints.ENV] = saved
        failpoints.reset()
    return (total - loop) / calls * 1e9

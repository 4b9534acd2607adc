"""Optimove burst: 5,000 triggers across 2 event generators against the sandbox Optimove with
OPTIMOVE_BRAND_RPS=50 (the sandbox answers 429 above the limit in any 1 s window); then 500 at
OPTIMOVE_BRAND_RPS=5, below the emulator's own pace, where the limiter is what sets the rate.

Triggers are accepted in-process through the accept flow (the API's own code path minus HTTP, so
the burst lands in the queue at once); the dispatch phase (SQS -> dispatch function -> sandbox)
is what is measured. Status polls are pushed out of the window (first poll after 900 s) so every
request the sandbox sees is a run. Figures: achieved runs/s over the limit as a ratio, the most
requests in any 1 s window, 429s, lost and duplicated runs.

    .venv/bin/python -m bench optimove        (or: .venv/bin/python -m bench.bench_optimove)
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from bench.common import quiet_stack, wait_until

TRIGGERS = int(os.environ.get("BENCH_OPTIMOVE_TRIGGERS", "5000"))
RPS = 50
# The emulator's own pace here is ~7 runs/s (each run is ~4 DynamoDB and 3 SQS calls on one moto
# process), so at 50/s it is moto that is measured; a second, smaller burst at a limit below
# that pace shows the limiter itself.
LOW_RPS, LOW_TRIGGERS = 5, 500
GENERATORS = ("gen-match-start", "gen-goal-scored")


def run(triggers: int, rps: int) -> dict[str, Any]:
    env = {
        "OPTIMOVE_BRAND_RPS": str(rps),
        "OPTIMOVE_POLL_FIRST_DELAY_S": "900",
        "OPTIMOVE_MAX_INLINE_WAIT_S": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with quiet_stack(env, poller_workers=4) as stack:
        from relay.core.limiter.buckets import plan
        from relay.destinations.optimove import wiring
        from relay.destinations.optimove.accept import accept_optimove
        from relay.destinations.optimove.models import OptimoveTrigger

        sandbox = stack.sandbox_optimove
        deps = wiring.accept_deps()
        started = time.monotonic()
        # The burst is in the queue before the dispatchers start, as if it had arrived at once:
        # in one emulated process, accepting alongside dispatching would measure the emulator.
        with stack.pollers.paused():
            for i in range(triggers):
                trigger = OptimoveTrigger(
                    event_generator_id=GENERATORS[i % 2], topic_key="bench", context={"n": i}
                )
                accept_optimove(
                    trigger, execution_id=f"bench-{i}", request_hash=str(i), caller="bench", deps=deps
                )
        accepted_s = time.monotonic() - started
        # Generous: the moto emulator, not the limiter, sets the pace at 50/s (a few runs a second).
        wait_until(lambda: len(sandbox.accepted_runs()) >= triggers, timeout_s=triggers / 2 + 60)
        time.sleep(2)  # anything late (a duplicate) would show up now
        runs = sandbox.accepted_runs()
        arrivals = sorted(r.arrived_at for r in runs)
        span = (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan")
        seen = Counter(r.context["n"] for r in runs)
        return {
            "accepted_s": accepted_s,
            "span": span,
            "achieved": (len(arrivals) - 1) / span if span else float("nan"),
            "design": plan(rps, deps.settings.optimove_limit_bucket_min_s).throughput,
            "max_1s": sandbox.max_in_any_window(1.0),
            "http_429": sandbox.rate_limited,
            "lost": sum(1 for i in range(triggers) if i not in seen),
            "duplicated": sum(c - 1 for c in seen.values() if c > 1),
        }


def main() -> None:
    for triggers, rps in ((TRIGGERS, RPS), (LOW_TRIGGERS, LOW_RPS)):
        r = run(triggers, rps)
        print(f"Optimove burst: {triggers} triggers, {len(GENERATORS)} generators, OPTIMOVE_BRAND_RPS={rps}")
        print(f"  accepted in-process in       {r['accepted_s']:.1f} s")
        print(f"  dispatch phase               {r['span']:.1f} s")
        print(
            f"  achieved runs/s              {r['achieved']:.1f}  (ratio to limit {r['achieved'] / rps:.2f}; "
            f"the limiter's design ceiling is {r['design']}/s, {r['design'] / rps:.2f})"
        )
        print(f"  most requests in any 1 s     {r['max_1s']}  (limit {rps})")
        print(f"  429 answers                  {r['http_429']}")
        print(
            f"  lost / duplicated            {r['lost']} / {r['duplicated']}  "
            "(lost = not sent when the wait ended)"
        )


if __name__ == "__main__":
    main()

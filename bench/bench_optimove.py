"""Optimove burst: 5,000 triggers across 2 event generators against the sandbox Optimove with
OPTIMOVE_BRAND_RPS=50 (the sandbox answers 429 above 50 in any 1 s window).

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

from bench.common import quiet_stack, wait_until

TRIGGERS = int(os.environ.get("BENCH_OPTIMOVE_TRIGGERS", "5000"))
RPS = 50
GENERATORS = ("gen-match-start", "gen-goal-scored")


def main() -> None:
    env = {
        "OPTIMOVE_BRAND_RPS": str(RPS),
        "OPTIMOVE_POLL_FIRST_DELAY_S": "900",
        "OPTIMOVE_MAX_INLINE_WAIT_S": "1",
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }
    with quiet_stack(env, poller_workers=4) as stack:
        from relay import wiring
        from relay.flows.optimove_accept import accept_optimove
        from relay.models.optimove import OptimoveTrigger

        sandbox = stack.sandbox_optimove
        deps = wiring.optimove_accept_deps()
        started = time.monotonic()
        # The burst is in the queue before the dispatchers start, as if it had arrived at once:
        # in one emulated process, accepting alongside dispatching would measure the emulator.
        with stack.pollers.paused():
            for i in range(TRIGGERS):
                trigger = OptimoveTrigger(
                    event_generator_id=GENERATORS[i % 2], topic_key="bench", context={"n": i}
                )
                accept_optimove(
                    trigger, execution_id=f"bench-{i}", request_hash=str(i), caller="bench", deps=deps
                )
        accepted_s = time.monotonic() - started
        # Generous: the moto emulator, not the limiter, sets the pace here (a few runs a second).
        wait_until(lambda: len(sandbox.accepted_runs()) >= TRIGGERS, timeout_s=TRIGGERS / 2 + 60)
        time.sleep(2)  # anything late (a duplicate) would show up now
        runs = sandbox.accepted_runs()
        arrivals = sorted(r.arrived_at for r in runs)
        span = (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else float("nan")
        achieved = (len(arrivals) - 1) / span if span else float("nan")
        seen = Counter(r.context["n"] for r in runs)
        lost = sum(1 for i in range(TRIGGERS) if i not in seen)
        duplicated = sum(c - 1 for c in seen.values() if c > 1)
        print(f"Optimove burst: {TRIGGERS} triggers, {len(GENERATORS)} generators, OPTIMOVE_BRAND_RPS={RPS}")
        print(f"  accepted in-process in       {accepted_s:.1f} s")
        print(f"  dispatch phase               {span:.1f} s")
        print(f"  achieved runs/s              {achieved:.1f}  (ratio to limit {achieved / RPS:.2f})")
        print(f"  most requests in any 1 s     {sandbox.max_in_any_window(1.0)}  (limit {RPS})")
        print(f"  429 answers                  {sandbox.rate_limited}")
        print(f"  lost / duplicated            {lost} / {duplicated}  (lost = not sent when the wait ended)")


if __name__ == "__main__":
    main()

"""Optimized.app dispatch throughput against the sandbox, with a compressed window (10 per 6 s).

Run A: 8 groups x 1,000 profiles (one trigger each), once without and once with the per-profile
result links (two extra DynamoDB writes per profile sent; at this 10x-compressed window that is
~1,300 writes/s, more than the moto emulator sustains, so the second line measures moto).
Run B: 2,000 single-profile triggers for one group from 8 client threads.
Run C: time to accept one 10,000-profile trigger.

How "achieved profiles per group-window" is measured: a group's sends (as the sandbox saw them
arrive) span (last - first) seconds; a perfect dispatcher sending N batches at L per W spans
exactly floor((N - 1) / L) windows after its first one, so the windows a group used are
``(last - first) / W + 1`` and its achieved rate is ``profiles / windows_used``. The ratio is
that against the ceiling ``L x 50``. Lost/duplicated compare every accepted profile (unique phone
numbers) with what the sandbox received.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import api_client, quiet_stack, wait_until

LIMIT, WINDOW_S, BATCH = 10, 6.0, 50
ENV = {
    "OPTIMIZED_GROUP_LIMIT": str(LIMIT),
    "OPTIMIZED_GROUP_WINDOW_S": str(WINDOW_S),
    "OPTIMIZED_WINDOW_MARGIN_S": "0.02",
    "DISPATCH_LINGER_S": "1.0",
}


def profile(group_no: int, i: int) -> dict[str, Any]:
    return {"person": {"phone_number": f"+3584{group_no:02d}{i:07d}"}, "ref": f"g{group_no}-{i}"}


def group_ratio(stack: Any, group_id: str) -> tuple[float, int, int]:
    """(achieved/ceiling, requests, profiles) for one group from the sandbox's arrival log."""
    sent = [b for b in stack.sandbox.received if b.group_id == group_id and b.status == 201]
    if not sent:
        return 0.0, 0, 0
    arrivals = sorted(b.arrived_at for b in sent)
    profiles = sum(len(b.profiles) for b in sent)
    windows_used = (arrivals[-1] - arrivals[0]) / WINDOW_S + 1
    return profiles / windows_used / (LIMIT * BATCH), len(sent), profiles


def lost_and_duplicated(stack: Any, expected: set[str]) -> tuple[int, int]:
    received = Counter(
        p["person"]["phone_number"] for b in stack.sandbox.received if b.status == 201 for p in b.profiles
    )
    lost = len(expected - set(received))
    duplicated = sum(n - 1 for n in received.values() if n > 1)
    return lost, duplicated


def wait_done(client: Any, execution_ids: list[str], timeout_s: float) -> bool:
    def done() -> bool:
        for eid in execution_ids:
            status = client.get(f"/v1/executions/{eid}", params={"chunks": "false"}).json()["status"]
            if status in ("queued", "dispatching"):
                return False
        return True

    return wait_until(done, timeout_s, every_s=0.5)


def run_groups(groups: int = 8, per_group: int = 1000, *, link_profiles: bool = True) -> dict[str, Any]:
    env = {**ENV, "RESULTS_LINK_PROFILES": str(link_profiles).lower()}
    with quiet_stack(env) as stack, api_client(stack) as client:
        group_ids = [str(uuid.uuid4()) for _ in range(groups)]
        expected: set[str] = set()
        executions = []
        for g, group_id in enumerate(group_ids):
            profiles = [profile(g, i) for i in range(per_group)]
            expected |= {p["person"]["phone_number"] for p in profiles}
            answer = client.post("/v1/optimized/triggers", json={"group_id": group_id, "profiles": profiles})
            answer.raise_for_status()
            executions.append(answer.json()["execution_id"])
        completed = wait_done(client, executions, timeout_s=180)
        ratios = [group_ratio(stack, g)[0] for g in group_ids]
        lost, duplicated = lost_and_duplicated(stack, expected)
        stats = stack.sandbox.stats()
        return {
            "completed": completed,
            "ratio_mean": statistics.mean(ratios),
            "ratio_min": min(ratios),
            "http_429": stats["by_status"].get("429", 0),
            "requests": stats["requests"],
            "max_in_any_window": max(stats["max_in_any_window"].values()),
            "lost": lost,
            "duplicated": duplicated,
        }


def run_singles(triggers: int = 2000, threads: int = 8) -> dict[str, Any]:
    with quiet_stack(ENV) as stack, api_client(stack) as client:
        group_id = str(uuid.uuid4())
        campaign = str(uuid.uuid4())

        def send(i: int) -> str:
            body = {
                "group_id": group_id,
                "profiles": [profile(99, i)],
                "schedule": {"campaign_uuid": campaign},
            }
            answer = client.post("/v1/optimized/triggers", json=body)
            answer.raise_for_status()
            return answer.json()["execution_id"]

        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            executions = list(pool.map(send, range(triggers)))
        accept_s = time.monotonic() - started
        completed = wait_done(client, executions[-50:], timeout_s=180) and wait_done(client, executions, 60)
        ratio, requests, profiles = group_ratio(stack, group_id)
        lost, duplicated = lost_and_duplicated(
            stack, {profile(99, i)["person"]["phone_number"] for i in range(triggers)}
        )
        return {
            "completed": completed,
            "accept_s": accept_s,
            "ratio": ratio,
            "requests": requests,
            "profiles_per_request": profiles / max(1, requests),
            "http_429": stack.sandbox.stats()["by_status"].get("429", 0),
            "lost": lost,
            "duplicated": duplicated,
        }


def run_big_accept(profiles: int = 10_000, repeats: int = 3) -> dict[str, Any]:
    with (
        quiet_stack({**ENV, "OPTIMIZED_GROUP_LIMIT": "1"}, poller_workers=1) as stack,
        api_client(stack) as client,
    ):
        times = []
        for r in range(repeats):
            body = {"group_id": str(uuid.uuid4()), "profiles": [profile(r, i) for i in range(profiles)]}
            started = time.monotonic()
            client.post("/v1/optimized/triggers", json=body).raise_for_status()
            times.append(time.monotonic() - started)
        return {"median_s": statistics.median(times), "runs": [round(t, 3) for t in times]}


def main() -> None:
    print(f"== Optimized.app dispatch vs sandbox, limit {LIMIT} per {WINDOW_S:g} s per group ==")
    for link_profiles in (False, True):
        a = run_groups(link_profiles=link_profiles)
        links = "2 result-link writes per profile" if link_profiles else "RESULTS_LINK_PROFILES=false"
        print(
            f"A  8 groups x 1,000 profiles ({links}): achieved/ceiling {a['ratio_mean']:.3f} "
            f"(min {a['ratio_min']:.3f}), 429s {a['http_429']}, max sends in any window "
            f"{a['max_in_any_window']}/{LIMIT}, lost {a['lost']}, duplicated {a['duplicated']}, "
            f"completed {a['completed']}"
        )
    b = run_singles()
    print(
        f"B  2,000 single-profile triggers, 1 group: achieved/ceiling {b['ratio']:.3f}, "
        f"{b['requests']} requests ({b['profiles_per_request']:.1f} profiles each; one per trigger would be "
        f"0.02 of the ceiling), accepted in {b['accept_s']:.1f} s, 429s {b['http_429']}, "
        f"lost {b['lost']}, duplicated {b['duplicated']}, completed {b['completed']}"
    )
    c = run_big_accept()
    print(f"C  accept one 10,000-profile trigger: median {c['median_s']:.2f} s (runs {c['runs']})")


if __name__ == "__main__":
    main()

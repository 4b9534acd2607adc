"""The sandbox Optimove's chaos mode over loopback HTTP: seeded 500s, slow 503s and runs
created upstream whose answer is dropped."""

from __future__ import annotations

import httpx
import pytest
from relay_local.sandbox_optimove import SandboxOptimove

pytestmark = [pytest.mark.integration, pytest.mark.timeout(30)]

KEYS = {"x-api-key": "sandbox-api-key", "x-brand-key": "sandbox-brand-key"}


def _run(seed: int, n: int = 60) -> tuple[list[str], SandboxOptimove]:
    seen: list[str] = []
    with SandboxOptimove(rps=1000) as sb, httpx.Client(base_url=sb.url, headers=KEYS, timeout=5) as c:
        sb.chaos(fail=0.25, slow=0.25, slow_s=0.05, drop_after_commit=0.25, seed=seed)
        for i in range(n):
            try:
                r = c.post("/event-generators/gen/run", json={"topic_key": "t", "context": {"n": i}})
                seen.append(str(r.status_code))
            except httpx.RemoteProtocolError:
                seen.append("dropped")
        return seen, sb


def test_chaos_fails_slows_and_drops_runs_after_commit() -> None:
    seen, sandbox = _run(seed=3)
    assert {"500", "503", "202", "dropped"} <= set(seen), seen
    assert _run(seed=3)[0] == seen
    accepted = sandbox.accepted_runs()
    # A dropped run was created upstream: recorded as accepted, with an execution of its own.
    assert sum(r.dropped for r in accepted) == seen.count("dropped")
    assert len(accepted) == seen.count("202") + seen.count("dropped")
    assert all(r.execution_id in sandbox.executions for r in accepted)
    sandbox.reset()
    assert sandbox._chaos is None

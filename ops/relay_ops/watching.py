"""`relay watch`: an execution's progress, live, until it ends."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from relay_ops import render
from relay_ops.api import RelayApi

# For a destination this command does not know (a newer relay): the statuses in which work moves.
DEFAULT_IN_PROGRESS = ("queued", "dispatching", "scheduled", "sending", "accepted", "processing", "pending")
# Ended, but not everything went out.
SHORTFALL = ("failed", "ambiguous", "dead_lettered")
FAILED_STATUSES = frozenset({"failed", "partially_failed", "dead_lettered", "unknown"})


def in_progress(view: dict[str, Any]) -> bool:
    from relay import destinations  # noqa: F401 - registers every destination
    from relay.executions import registry

    try:
        moving = registry.get(view.get("destination")).in_progress or DEFAULT_IN_PROGRESS
    except registry.UnknownDestination:
        moving = DEFAULT_IN_PROGRESS
    return view.get("status") in moving


def succeeded(view: dict[str, Any]) -> bool:
    chunks = view.get("chunks") or {}
    return view.get("status") not in FAILED_STATUSES and not any(chunks.get(k) for k in SHORTFALL)


def watch(
    api: RelayApi,
    execution_id: str,
    *,
    interval_s: float,
    timeout_s: float | None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """0: ended with everything sent; 1: ended with some failed, ambiguous or dead-lettered (or
    the execution failed); 2: ``timeout_s`` passed first."""
    deadline = None if timeout_s is None else clock() + timeout_s
    with render.watch_progress(execution_id) as update:
        while True:
            view = api.get(f"/v1/executions/{execution_id}", chunks="false")
            update(view)
            if not in_progress(view):
                break
            if deadline is not None and clock() >= deadline:
                render.error(f"still {view.get('status')} after {timeout_s:g}s")
                return 2
            sleep(interval_s)
    render.watch_summary(view)
    return 0 if succeeded(view) else 1

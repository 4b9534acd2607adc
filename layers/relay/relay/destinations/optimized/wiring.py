"""The Optimized.app path's dependencies, built once per process."""

from __future__ import annotations

from collections.abc import Callable

from relay.core import wiring
from relay.core.clock import system_clock
from relay.destinations.optimized.settings import get_settings
from relay.destinations.optimized.wakeups import Wakeups


@wiring.once
def wakeups() -> Wakeups:
    s = get_settings()
    return Wakeups(wiring.queue(s.dispatch_queue_url, s.dispatch_dlq_url))


def accept_deps():  # -> AcceptDeps (imported lazily: the API's cold start pays only for what it uses)
    from relay.destinations.optimized.accept import AcceptDeps

    return AcceptDeps(table=wiring.table(), queue=wakeups(), settings=get_settings(), clock=system_clock)


@wiring.once
def client():
    from relay.destinations.optimized.client import OptimizedClient

    s = get_settings()
    return OptimizedClient(
        s.optimized_api_url,
        s.optimized_token_source(),
        connect_timeout_s=s.optimized_connect_timeout_s,
        read_timeout_s=s.optimized_read_timeout_s,
        retry_after_default_s=s.optimized_retry_after_default_s,
    )


def dispatch_deps(emit: Callable[[str, float], None]):  # -> DispatchDeps
    from relay.destinations.optimized.dispatcher import DispatchDeps

    return DispatchDeps(
        wiring.table(), wakeups(), client(), get_settings(), emit=emit, links=wiring.links_table()
    )

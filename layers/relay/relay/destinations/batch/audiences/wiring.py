"""The audience path's dependencies, from the Batch destination's (one client, one queue, one
project limiter per process)."""

from __future__ import annotations

from collections.abc import Callable

from relay.core import wiring as core
from relay.core.clock import system_clock


def queue():  # -> AudienceQueue
    from relay.destinations.batch import wiring
    from relay.destinations.batch.audiences.queues import AudienceQueue

    return AudienceQueue(wiring.queue())


def accept_deps():  # -> AudienceAcceptDeps
    from relay.destinations.batch.audiences.accept import AudienceAcceptDeps
    from relay.destinations.batch.settings import get_settings

    return AudienceAcceptDeps(table=core.table(), queue=queue(), settings=get_settings(), clock=system_clock)


def deps(emit: Callable[[str, float], None] | None = None, *, with_client: bool = True):  # -> AudienceDeps
    """The worker's; the reconciler's has no client (it never calls Batch, so reads no key)."""
    from relay.destinations.batch import wiring
    from relay.destinations.batch.audiences.send import AudienceDeps
    from relay.destinations.batch.settings import get_settings

    built = AudienceDeps(
        table=core.table(),
        queue=queue(),
        client=wiring.client() if with_client else None,
        limiter=wiring.project_limiter() if with_client else None,  # type: ignore[arg-type]
        settings=get_settings(),
    )
    if emit is not None:
        built.emit = emit
    return built

"""The Batch.com path's dependencies, built once per process."""

from __future__ import annotations

from collections.abc import Callable

from relay.core import wiring
from relay.core.limiter import Limiter, per_second
from relay.core.queue import Queue
from relay.core.store import keys
from relay.destinations.batch.settings import get_settings


@wiring.once
def client():  # -> BatchClient (imported lazily: httpx is not free at cold start)
    from relay.destinations.batch.client import BatchClient

    s = get_settings()
    rest_key, project_key = s.batch_key_sources()
    return BatchClient(
        s.batch_api_url,
        rest_key,
        project_key,
        connect_timeout_s=s.batch_connect_timeout_s,
        read_timeout_s=s.batch_read_timeout_s,
    )


@wiring.once
def queue() -> Queue:
    """The Batch queue: wake-ups of the profile dispatcher (and the audiences' messages)."""
    s = get_settings()
    return wiring.queue(s.batch_queue_url, s.batch_dlq_url)


def project_hash() -> str:
    """The project key as limiter and lane names carry it: a hash, never the key."""
    _, project_key = get_settings().batch_key_sources()
    return keys.token_fingerprint(project_key.get())


@wiring.once
def project_limiter() -> Limiter:
    """Every endpoint but /profiles/update: BATCH_PROJECT_RPS requests a second per project key,
    for any alignment of Batch's windows (audiences call ``acquire`` before each request)."""
    return per_second(wiring.table(), f"batch:project:{project_hash()}", get_settings().batch_project_rps)


@wiring.once
def updates_limiter():  # -> TokenBucket
    """/profiles/update: BATCH_PROFILE_UPDATES_PER_S updates a second, bursts up to
    BATCH_PROFILE_UPDATES_BURST (one update = one distinct profile of a call)."""
    from relay.core.limiter.token_bucket import TokenBucket

    s = get_settings()
    return TokenBucket(
        table=wiring.table(),
        name=f"batch:updates:{project_hash()}",
        rate=s.batch_profile_updates_per_s,
        burst=s.batch_profile_updates_burst,
        slack_s=s.batch_updates_slack_s,
    )


def lane() -> str:
    """Where this project's pending profile operations wait (one lane per project key)."""
    return f"batch#{project_hash()}"


def dispatch_deps(emit: Callable[[str, float], None]):  # -> DispatchDeps
    from relay.destinations.batch.dispatcher import DispatchDeps

    return DispatchDeps(
        table=wiring.table(),
        queue=queue(),
        client=client(),
        limiter=updates_limiter(),
        settings=get_settings(),
        lane=lane(),
        emit=emit,
    )

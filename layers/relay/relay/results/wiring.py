"""The results path's dependencies, built once per process."""

from __future__ import annotations

from collections.abc import Callable

from relay.core import wiring
from relay.core.queue import Queue
from relay.results.settings import get_settings


@wiring.once
def queue() -> Queue:
    s = get_settings()
    return wiring.queue(s.results_queue_url, s.results_dlq_url)


def verifier():
    """Built at each use (cheap): the secrets are read through their cache, so a rotated
    WEBHOOK_SECRET reaches a warm function within RELAY_SECRET_MAX_AGE_S."""
    from relay.results.signatures import Verifier

    s = get_settings()
    return Verifier(
        secrets=tuple(s.webhook_secrets()),
        scheme=s.webhook_scheme,
        tolerance_s=s.webhook_tolerance_s,
        # webhook_hmac_header -> hmac_header, and so on for the plain-HMAC scheme's options
        **{name.removeprefix("webhook_"): value for name, value in s if name.startswith("webhook_hmac_")},
    )


@wiring.once
def endpoint():
    """The customer's results endpoint, or None when forwarding is off (no URL)."""
    from relay.results.endpoint import ResultsEndpoint

    s = get_settings()
    url = s.results_url()
    if not url:
        return None
    if not s.results_secret():
        raise RuntimeError("RESULTS_WEBHOOK_URL is set but RESULTS_WEBHOOK_SECRET is not: results are signed")
    # The secret is read at each request (through its cache), so a rotation reaches this client.
    return ResultsEndpoint(
        url,
        s.results_secret,
        connect_timeout_s=s.results_connect_timeout_s,
        read_timeout_s=s.results_read_timeout_s,
    )


def ingest_deps(emit: Callable[[str, float], None] | None = None):  # -> IngestDeps
    from relay.results.ingest import IngestDeps

    deps = IngestDeps(table=wiring.table(), queue=queue(), settings=get_settings())
    if emit is not None:
        deps.emit = emit
    return deps


def deliver_deps(
    emit: Callable[[str, float], None], remaining_ms: Callable[[], int] | None = None
):  # -> DeliverDeps
    from relay.results.deliver import DeliverDeps

    return DeliverDeps(
        wiring.table(),
        queue(),
        get_settings(),
        endpoint(),
        emit=emit,
        links=wiring.links_table(),
        remaining_ms=remaining_ms,
    )

"""The Optimove path's dependencies, built once per process."""

from __future__ import annotations

from collections.abc import Callable

from relay.core import aws, wiring
from relay.core.clock import system_clock
from relay.destinations.optimove.queues import RunQueues
from relay.destinations.optimove.settings import get_settings


@wiring.once
def run_queues() -> RunQueues:
    s = get_settings()
    return RunQueues(
        wiring.queue(s.optimove_queue_url, s.optimove_dlq_url), wiring.queue(s.poll_queue_url, s.poll_dlq_url)
    )


@wiring.once
def client():
    from relay.destinations.optimove.client import OptimoveClient

    s = get_settings()
    api_key, brand_key = s.optimove_key_sources()
    return OptimoveClient(
        s.optimove_api_url,
        api_key,
        brand_key,
        connect_timeout_s=s.optimove_connect_timeout_s,
        read_timeout_s=s.optimove_read_timeout_s,
        retry_after_default_s=s.optimove_retry_after_default_s,
    )


@wiring.once
def schemas():
    from relay.destinations.optimove.schemas import SchemaRegistry

    s = get_settings()
    return SchemaRegistry(
        wiring.table(), s.optimove_schemas, s.optimove_schema_cache_s, require=s.optimove_require_schema
    )


def accept_deps():  # -> OptimoveAcceptDeps
    from relay.destinations.optimove.accept import OptimoveAcceptDeps

    return OptimoveAcceptDeps(
        table=wiring.table(),
        queues=run_queues(),
        schemas=schemas(),
        settings=get_settings(),
        clock=system_clock,
    )


def deps(emit: Callable[[str, float], None] | None = None):  # -> OptimoveDeps (send and poll)
    from relay.destinations.optimove.send import OptimoveDeps

    built = OptimoveDeps(
        table=wiring.table(),
        queues=run_queues(),
        client=client(),
        settings=get_settings(),
        sqs=aws.client("sqs"),
    )
    if emit is not None:
        built.emit = emit
    return built


def reconcile_deps(emit: Callable[[str, float], None]):  # -> OptimoveDeps without a client
    """The reconciler's: it queues messages and settles states, and never calls Optimove (so it
    reads no Optimove secret)."""
    from relay.destinations.optimove.send import OptimoveDeps

    return OptimoveDeps(
        table=wiring.table(),
        queues=run_queues(),
        client=None,  # type: ignore[arg-type]
        settings=get_settings(),
        sqs=aws.client("sqs"),
        emit=emit,
    )

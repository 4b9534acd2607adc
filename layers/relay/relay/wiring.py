"""Builds the flows' dependencies from settings, once per process (Lambda reuses them warm)."""

from __future__ import annotations

from functools import lru_cache

from relay import aws
from relay.clock import system_clock
from relay.config import get_settings
from relay.queues import WakeQueue
from relay.store.table import Table


@lru_cache(maxsize=1)
def table() -> Table:
    return Table(aws.client("dynamodb"), get_settings().relay_table_name)


@lru_cache(maxsize=1)
def links_table() -> Table:
    return Table(aws.client("dynamodb"), get_settings().relay_links_table_name)


@lru_cache(maxsize=1)
def wake_queue() -> WakeQueue:
    s = get_settings()
    return WakeQueue(aws.client("sqs"), s.dispatch_queue_url, s.dispatch_dlq_url)


def accept_deps():  # -> AcceptDeps (imported lazily: the API's cold start pays only for what it uses)
    from relay.flows.accept import AcceptDeps

    return AcceptDeps(table=table(), queue=wake_queue(), settings=get_settings(), clock=system_clock)


@lru_cache(maxsize=1)
def optimized_client():
    from relay.upstreams.optimized import OptimizedClient

    s = get_settings()
    return OptimizedClient(
        s.optimized_api_url,
        s.optimized_token(),
        connect_timeout_s=s.optimized_connect_timeout_s,
        read_timeout_s=s.optimized_read_timeout_s,
    )


@lru_cache(maxsize=1)
def result_queue():
    from relay.result_queue import ResultQueue

    s = get_settings()
    return ResultQueue(aws.client("sqs"), s.results_queue_url, s.results_dlq_url)


@lru_cache(maxsize=1)
def webhook_verifier():
    from relay.webhooks.signatures import Verifier

    s = get_settings()
    return Verifier(
        secrets=tuple(s.webhook_secrets()),
        scheme=s.webhook_scheme,
        tolerance_s=s.webhook_tolerance_s,
        hmac_header=s.webhook_hmac_header,
        hmac_algorithm=s.webhook_hmac_algorithm,
        hmac_encoding=s.webhook_hmac_encoding,
        hmac_prefix=s.webhook_hmac_prefix,
    )


@lru_cache(maxsize=1)
def results_endpoint():
    """The customer's results endpoint, or None when forwarding is off (no URL or no secret)."""
    from relay.upstreams.customer import ResultsEndpoint

    s = get_settings()
    url = s.results_url()
    if not url:
        return None
    secret = s.results_secret()
    if not secret:
        raise RuntimeError("RESULTS_WEBHOOK_URL is set but RESULTS_WEBHOOK_SECRET is not: results are signed")
    return ResultsEndpoint(
        url, secret, connect_timeout_s=s.results_connect_timeout_s, read_timeout_s=s.results_read_timeout_s
    )


@lru_cache(maxsize=1)
def optimove_queues():
    from relay.optimove_queues import OptimoveQueues

    s = get_settings()
    return OptimoveQueues(
        aws.client("sqs"), s.optimove_queue_url, s.optimove_dlq_url, s.poll_queue_url, s.poll_dlq_url
    )


@lru_cache(maxsize=1)
def optimove_client():
    from relay.upstreams.optimove import OptimoveClient

    s = get_settings()
    api_key, brand_key = s.optimove_keys()
    return OptimoveClient(
        s.optimove_api_url,
        api_key,
        brand_key,
        connect_timeout_s=s.optimove_connect_timeout_s,
        read_timeout_s=s.optimove_read_timeout_s,
        retry_after_default_s=s.optimove_retry_after_default_s,
    )


@lru_cache(maxsize=1)
def optimove_schemas():
    from relay.flows.optimove_schemas import SchemaRegistry

    s = get_settings()
    return SchemaRegistry(
        table(), s.optimove_schemas, s.optimove_schema_cache_s, require=s.optimove_require_schema
    )


def optimove_accept_deps():  # -> OptimoveAcceptDeps
    from relay.flows.optimove_accept import OptimoveAcceptDeps

    return OptimoveAcceptDeps(
        table=table(),
        queues=optimove_queues(),
        schemas=optimove_schemas(),
        settings=get_settings(),
        clock=system_clock,
    )


def optimove_deps(emit=None):  # -> OptimoveDeps (send and poll)
    from relay.flows.optimove_send import OptimoveDeps

    deps = OptimoveDeps(
        table=table(),
        queues=optimove_queues(),
        client=optimove_client(),
        settings=get_settings(),
        sqs=aws.client("sqs"),
    )
    if emit is not None:
        deps.emit = emit
    return deps


def reset() -> None:
    """Forget every cached dependency (tests and the local stack change settings)."""
    for cached in (optimove_queues, optimove_client, optimove_schemas):
        cached.cache_clear()
    for cached in (
        table,
        links_table,
        wake_queue,
        optimized_client,
        result_queue,
        webhook_verifier,
        results_endpoint,
    ):
        cached.cache_clear()

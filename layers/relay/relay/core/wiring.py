"""Dependencies built once per process (Lambda reuses them warm), and forgotten all at once when
the settings change (tests, the local stack).

Each part of the relay has a ``wiring`` module of its own; they all cache through :func:`once`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from relay.core import aws, failpoints
from relay.core.queue import Queue
from relay.core.settings import get_settings, reset_settings
from relay.core.store.table import Table

F = TypeVar("F", bound=Callable[..., Any])
_cached: list[Any] = []


def once(build: F) -> F:
    cached = cache(build)
    _cached.append(cached)
    return cached  # type: ignore[return-value]


def reset() -> None:
    """Forget parsed settings, armed failpoints, AWS clients and every cached dependency."""
    reset_settings()
    failpoints.reset()
    aws.reset_clients()
    for cached in _cached:
        cached.cache_clear()


@once
def table() -> Table:
    return Table(aws.client("dynamodb"), get_settings().relay_table_name)


@once
def links_table() -> Table:
    return Table(aws.client("dynamodb"), get_settings().relay_links_table_name)


def queue(url: str, dead_letter_url: str = "") -> Queue:
    return Queue(aws.client("sqs"), url, dead_letter_url)

"""Time, injectable: flows take a ``Clock`` so tests can compress or freeze it."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], float]

system_clock: Clock = time.time


def iso(ts: float) -> str:
    """Epoch seconds as an ISO 8601 UTC string with milliseconds."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

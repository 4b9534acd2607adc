"""Exponential back-off, shared by every retry in the relay (upstream sends, forwards, runs)."""

from __future__ import annotations

import random


def ceiling(attempt: int, base_s: float, max_s: float) -> float:
    """base, 2 x base, 4 x base ... for attempts 1, 2, 3 ..., never above max."""
    return min(max_s, base_s * 2 ** max(0, attempt - 1))


def jittered(attempt: int, base_s: float, max_s: float) -> float:
    """Half to all of the ceiling: retries of many callers drift apart, none comes back early."""
    return ceiling(attempt, base_s, max_s) * random.uniform(0.5, 1.0)


def full_jitter(attempt: int, base_s: float, max_s: float) -> float:
    """Anywhere from nothing to the ceiling (AWS's "full jitter"), but at least a second or the
    ceiling if smaller: the retry goes through an SQS delay, whole seconds anyway."""
    top = ceiling(attempt, base_s, max_s)
    return max(min(1.0, top), random.uniform(0, top))

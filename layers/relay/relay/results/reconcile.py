"""What the reconciler repairs on the results path (see ``functions/reconciler``)."""

from __future__ import annotations

from relay.executions.registry import Emit


def reconcile(now: float, stale_before: float, emit: Emit) -> dict[str, int]:
    """Results left untouched since ``stale_before`` with nothing in flight: repairs by kind."""
    return {}

"""An Optimized.app execution's status says what happened: handed upstream and scheduled for a
later start, partly cancelled, completed; every status is one the listing filter accepts."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from relay import destinations  # noqa: F401 - fills the registry
from relay.destinations.optimized import DESTINATION as OPTIMIZED
from relay.destinations.optimized.executions import derive_status, view
from relay.destinations.optimized.models import ExecutionStatus
from relay.destinations.optimove import DESTINATION as OPTIMOVE
from relay.destinations.optimove.models import OptimoveStatus
from relay.executions import registry

NOW = 1_900_000_000.0


def _execution(start_at: float | None = None, **chunks: int) -> dict[str, Any]:
    item: dict[str, Any] = {
        "execution_id": "e",
        "destination": "optimized",
        "created_at": NOW - 60,
        "chunks_total": sum(chunks.values()),  # pending ones have no counter of their own
        **{f"chunks_{name}": count for name, count in chunks.items() if name != "pending"},
    }
    if start_at is not None:
        item["schedule"] = {"campaign_uuid": "c", "start_at": start_at}
    return item


@pytest.mark.parametrize(
    ("start_at", "chunks", "status"),
    [
        (NOW + 3600, {"sent": 24}, "scheduled"),
        (NOW - 1, {"sent": 24}, "completed"),
        (None, {"sent": 24}, "completed"),
        (None, {"sent": 10, "cancelled": 14}, "partially_cancelled"),
        (NOW + 3600, {"sent": 10, "cancelled": 14}, "scheduled"),
        (NOW - 1, {"sent": 10, "cancelled": 14}, "partially_cancelled"),
        (None, {"cancelled": 24}, "cancelled"),
        (None, {"sent": 10, "failed": 1, "cancelled": 13}, "partially_failed"),
        (NOW + 3600, {"sent": 23, "ambiguous": 1}, "partially_failed"),
        (None, {"failed": 2}, "failed"),
        (NOW + 3600, {"sent": 10, "pending": 14}, "dispatching"),
        (NOW + 3600, {"pending": 24}, "queued"),
    ],
)
def test_the_status_says_what_happened(start_at: float | None, chunks: dict[str, int], status: str) -> None:
    item = _execution(start_at, **chunks)
    assert derive_status(item, NOW) == status


def test_a_campaign_scheduled_upstream_says_when_it_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    item = _execution(NOW + 3600, sent=2)
    monkeypatch.setattr("time.time", lambda: NOW)
    shown = view(item)
    assert (shown.status, shown.scheduled_for) == ("scheduled", "2030-03-17T18:46:40.000Z")
    monkeypatch.setattr("time.time", lambda: NOW + 3601)
    assert (view(item).status, view(item).scheduled_for) == ("completed", None)


def test_each_destination_lists_the_statuses_its_views_use() -> None:
    assert set(OPTIMIZED.statuses) == set(get_args(ExecutionStatus))
    assert set(OPTIMOVE.statuses) == set(get_args(OptimoveStatus))
    assert {"scheduled", "partially_cancelled", "published", "dead_lettered"} <= set(registry.statuses())

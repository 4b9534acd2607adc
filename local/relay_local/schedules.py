"""EventBridge schedules of the template, emulated: each function with a ``Schedule`` /
``ScheduleV2`` event is invoked with a Scheduled Event every ``every_s`` seconds (locally the
period is compressed: a trigger due in a few seconds should not wait a minute)."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger(__name__)


def scheduled_functions(template: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(function logical id, event name) of every schedule event."""
    out = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        events = ((resource or {}).get("Properties") or {}).get("Events") or {}
        for name, event in events.items():
            if (event or {}).get("Type") in ("Schedule", "ScheduleV2"):
                out.append((logical_id, name))
    return out


def scheduled_event(region: str, rule: str) -> dict[str, Any]:
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:123456789012:rule/{rule}"],
        "detail": {},
    }


class ScheduleRunner:
    def __init__(self, targets: list[tuple[str, Callable[[dict], Any]]], every_s: float, region: str) -> None:
        self.targets = targets
        self.every_s = every_s
        self.region = region
        self.runs = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> ScheduleRunner:
        if self.targets:
            self._thread = threading.Thread(target=self._run, name="schedules", daemon=True)
            self._thread.start()
        return self

    def run_once(self) -> None:
        for name, invoke in self.targets:
            try:
                invoke(scheduled_event(self.region, name))
            except Exception:
                log.exception("scheduled invocation of %s failed", name)
        self.runs += 1

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.run_once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

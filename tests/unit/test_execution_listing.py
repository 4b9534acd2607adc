"""Listing executions by status reads a bounded number of items per page, whatever the table holds,
and never skips one between pages."""

from __future__ import annotations

from typing import Any

import pytest
from relay.core.paging import encode_positions
from relay.executions import registry, service
from relay.executions.models import ExecutionView


class Listed(registry.Destination):
    name = "listed-test"
    statuses = ("rare", "common")

    def view(self, table: Any, item: dict[str, Any], *, details: bool) -> ExecutionView:
        return ExecutionView.model_construct(
            execution_id=item["execution_id"], destination=self.name, status=item["status"]
        )


@pytest.fixture(autouse=True)
def destination() -> Any:
    registry.register(Listed())
    yield
    registry._registered.pop(Listed.name, None)


class Pages:
    """list_page over N items newest first, counting what is read."""

    def __init__(self, statuses: list[str]) -> None:
        self.items = [
            {"execution_id": f"e{i:05d}", "destination": Listed.name, "status": status}
            for i, status in enumerate(statuses)
        ]
        self.read = 0

    def list_page(self, table: Any, *, limit: int, start: Any, since_iso: Any, until_iso: Any) -> Any:
        position = (start or {}).get(SHARD)
        at = 0 if position is None else int(position["gsi1sk"]["S"]) + 1
        page = self.items[at : at + limit]
        self.read += len(page)
        more = at + limit < len(self.items)
        last = str(at + len(page) - 1)
        key = {"gsi1pk": {"S": SHARD}, "gsi1sk": {"S": last}, "pk": {"S": "p"}, "sk": {"S": "s"}}
        return page, ({SHARD: key} if more else None)


SHARD = "EXECUTIONS#0"


@pytest.mark.parametrize("total", [1_000, 5_000])
def test_a_rare_status_costs_the_same_per_page_with_more_executions(
    monkeypatch: pytest.MonkeyPatch, total: int
) -> None:
    pages = Pages(["common"] * (total - 1) + ["rare"])
    monkeypatch.setattr(service.store, "list_page", pages.list_page)
    page = service.list_executions(None, status="rare", limit=10, next_token=None)  # type: ignore[arg-type]
    assert page.items == []
    assert page.next_token  # more to read, page by page
    assert pages.read == service.MAX_SCANNED_PER_PAGE


def test_following_the_tokens_finds_every_match_once(monkeypatch: pytest.MonkeyPatch) -> None:
    statuses = ["rare" if i % 7 == 0 else "common" for i in range(1_000)]
    pages = Pages(statuses)
    monkeypatch.setattr(service.store, "list_page", pages.list_page)
    seen, token = [], None
    while True:
        page = service.list_executions(None, status="rare", limit=10, next_token=token)  # type: ignore[arg-type]
        assert len(page.items) <= 10
        seen += [v.execution_id for v in page.items]
        token = page.next_token
        if not token:
            break
    assert seen == [f"e{i:05d}" for i in range(1_000) if i % 7 == 0]
    assert encode_positions  # the tokens above are the module's own

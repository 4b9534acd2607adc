"""The Idempotency-Key step shared by every trigger route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from relay.config import Settings
from relay.store.table import Table

Answer = TypeVar("Answer")


def accept_once(
    *,
    scope: str,
    idempotency_key: str | None,
    request_hash: str,
    settings: Settings,
    table: Table,
    lambda_context: Any,
    output_model: type,
    accept: Callable[[], Answer],
) -> Answer:
    """``accept()`` once per key: a repeat with the same body gets the first answer, another body
    a 409 (IdempotencyConflict). Without a key, just ``accept()``."""
    if not idempotency_key:
        return accept()
    from relay.flows.idempotency import run_once  # lazy: Powertools Idempotency costs ~250 ms cold

    return run_once(
        scope=scope,
        key=idempotency_key,
        request_hash=request_hash,
        table_name=settings.relay_table_name,
        client=table.client,
        ttl_s=settings.idempotency_ttl_s,
        lambda_context=lambda_context,
        accept=accept,
        output_model=output_model,
    )

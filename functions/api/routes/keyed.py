"""The Idempotency-Key step shared by every trigger route."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler.api_gateway import Router
from relay.core.settings import RelaySettings
from relay.core.store.table import Table
from relay.executions.requests import body_hash, execution_id_for

Answer = TypeVar("Answer")


@dataclass(frozen=True)
class KeyedTrigger:
    """What a trigger route derives from its request before accepting it: who sent it, the hash
    of its body, the execution id (fixed by the Idempotency-Key when there is one)."""

    kind: str  # the route's scope of Idempotency-Keys, e.g. "optimove-triggers"
    caller: str
    request_hash: str
    execution_id: str
    idempotency_key: str | None
    lambda_context: Any

    @classmethod
    def from_request(
        cls, router: Router, idempotency_key: str | None, kind: str, *, unscoped_ids: bool = False
    ) -> KeyedTrigger:
        """``unscoped_ids``: the route's execution ids predate per-route scoping (keep them)."""
        caller = router.context["caller"]
        return cls(
            kind=kind,
            caller=caller,
            request_hash=body_hash(router.current_event.json_body),
            execution_id=execution_id_for(idempotency_key, caller, "" if unscoped_ids else kind),
            idempotency_key=idempotency_key,
            lambda_context=router.lambda_context,
        )

    def accept_once(
        self,
        *,
        settings: RelaySettings,
        table: Table,
        output_model: type,
        accept: Callable[[], Answer],
    ) -> Answer:
        """``accept()`` once per key and caller: a repeat with the same body gets the first
        answer, another body a 409 (IdempotencyConflict). Without a key, just ``accept()``."""
        if not self.idempotency_key:
            return accept()
        from relay.executions.idempotency import run_once  # lazy: Powertools Idempotency costs ~250 ms cold

        return run_once(
            scope=f"{self.kind}#{self.caller}",
            key=self.idempotency_key,
            request_hash=self.request_hash,
            table_name=settings.relay_table_name,
            client=table.client,
            ttl_s=settings.idempotency_ttl_s,
            lambda_context=self.lambda_context,
            accept=accept,
            output_model=output_model,
        )

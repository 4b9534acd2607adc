"""Idempotency-Key handling with Powertools Idempotency on the relay table.

Same key + same body: the first answer again, nothing re-queued. Same key + different body:
IdempotencyConflict. Powertools keeps the stored answer and the in-progress lock; on top of it the
execution id is derived from the key, so even a retry after a crash lands on the same records.
Imported only when a request carries the header (the utility costs ~250 ms of cold start).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.serialization.pydantic import PydanticSerializer

from relay.executions.requests import IdempotencyConflict, IdempotencyInProgress

Answer = TypeVar("Answer")


def run_once(
    *,
    scope: str,
    key: str,
    request_hash: str,
    table_name: str,
    client: Any,
    ttl_s: int,
    lambda_context: Any,
    accept: Callable[[], Answer],
    output_model: type,
) -> Answer:
    config = IdempotencyConfig(
        event_key_jmespath="key",
        payload_validation_jmespath="body_hash",
        raise_on_no_idempotency_key=True,
        expires_after_seconds=ttl_s,
    )
    if lambda_context is not None:
        config.register_lambda_context(lambda_context)
    persistence = DynamoDBPersistenceLayer(
        table_name=table_name,
        key_attr="pk",
        sort_key_attr="sk",
        static_pk_value=f"IDEMPOTENCY#{scope}",
        expiry_attr="expires_at",
        boto3_client=client,
    )

    @idempotent_function(
        data_keyword_argument="request",
        config=config,
        persistence_store=persistence,
        output_serializer=PydanticSerializer(output_model),
    )
    def once(request: dict[str, str]) -> Answer:
        return accept()

    try:
        return once(request={"key": key, "body_hash": request_hash})
    except IdempotencyValidationError as exc:
        raise IdempotencyConflict(key) from exc
    except IdempotencyAlreadyInProgressError as exc:
        raise IdempotencyInProgress(key) from exc

"""POST /v1/batch/profiles: profile operations for Batch.com, any number, validated before
anything is stored, then packed into calls of at most 200 within Batch's limits."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.metrics import MetricUnit
from relay.core import wiring as core
from relay.destinations.batch.accept import accept_operations, default_deps
from relay.destinations.batch.models import ProfilesAccepted, ProfilesRequest

from routes.errors import BODY_ERRORS, answers
from routes.keyed import KeyedTrigger

router = Router()
logger = Logger(child=True)
metrics = Metrics()


@router.post(
    "/v1/batch/profiles",
    summary="Update Batch.com profiles (any number of operations; sent within Batch's limits)",
    responses=answers(202, "Accepted and queued", *BODY_ERRORS, 409),
    tags=["batch"],
)
def post_batch_profiles(
    request_body: Annotated[ProfilesRequest, Body(embed=False)],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
) -> Response[ProfilesAccepted]:
    request = KeyedTrigger.from_request(router, idempotency_key, "batch-profiles")
    deps = default_deps()
    operations = request_body.operations

    def accept() -> ProfilesAccepted:
        answer = accept_operations(
            [operation.upstream() for operation in operations],
            execution_id=request.execution_id,
            origin=request.caller,
            refs=[operation.ref for operation in operations],
            deps=deps,
        )
        return ProfilesAccepted.model_validate(answer)

    accepted = request.accept_once(
        settings=deps.settings, table=core.table(), output_model=ProfilesAccepted, accept=accept
    )
    metrics.add_metric(name="BatchOperationsAccepted", unit=MetricUnit.Count, value=accepted.operations)
    logger.info(
        "batch profile operations accepted",
        extra={
            "execution_id": accepted.execution_id,
            "operations": accepted.operations,
            "calls": accepted.calls,
        },
    )
    return Response(status_code=202, content_type="application/json", body=accepted)

"""POST /v1/optimized/triggers."""

from __future__ import annotations

from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header
from aws_lambda_powertools.metrics import MetricUnit
from relay.destinations.optimized import wiring
from relay.destinations.optimized.accept import accept_optimized
from relay.destinations.optimized.models import OptimizedTrigger, TriggerAccepted

from routes.errors import BODY_ERRORS, answers
from routes.keyed import KeyedTrigger

router = Router()
logger = Logger(child=True)
metrics = Metrics()


@router.post(
    "/v1/optimized/triggers",
    summary="Send profiles to an Optimized.app group (any number; delivered within its limits)",
    responses=answers(202, "Accepted and queued", *BODY_ERRORS, 409),
    tags=["optimized"],
)
def post_optimized_trigger(
    trigger: Annotated[OptimizedTrigger, Body(embed=False)],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
) -> Response[TriggerAccepted]:
    request = KeyedTrigger.from_request(router, idempotency_key, "optimized-triggers", unscoped_ids=True)
    deps = wiring.accept_deps()

    def accept() -> TriggerAccepted:
        return accept_optimized(
            trigger,
            execution_id=request.execution_id,
            request_hash=request.request_hash,
            caller=request.caller,
            deps=deps,
        )

    accepted = request.accept_once(
        settings=deps.settings,
        table=deps.table,
        output_model=TriggerAccepted,
        accept=accept,
    )
    metrics.add_metric(name="TriggersAccepted", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="ProfilesAccepted", unit=MetricUnit.Count, value=accepted.profiles)
    logger.info(
        "trigger accepted",
        extra={
            "execution_id": accepted.execution_id,
            "group_id": trigger.group_id,
            "profiles": accepted.profiles,
        },
    )
    return Response(status_code=202, content_type="application/json", body=accepted)

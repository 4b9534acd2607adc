"""POST /v1/optimove/triggers, PUT/GET /v1/optimove/generators/{id}/schema, GET /v1/schedules."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Annotated

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from relay.core import wiring as core
from relay.core.http import ApiError
from relay.core.models import ErrorDetail
from relay.core.timeutil import within_range
from relay.destinations.optimove import wiring
from relay.destinations.optimove.accept import accept_optimove
from relay.destinations.optimove.models import (
    GeneratorId,
    GeneratorSchema,
    GeneratorSchemaView,
    OptimoveTrigger,
    OptimoveTriggerAccepted,
)
from relay.destinations.optimove.schemas import ContextRejected, SchemaInvalid, SchemaMissing
from relay.executions.models import SchedulePage
from relay.executions.service import list_scheduled

from routes.errors import BODY_ERRORS, answers
from routes.keyed import KeyedTrigger

router = Router()
logger = Logger(child=True)
metrics = Metrics()


@router.post(
    "/v1/optimove/triggers",
    summary="Run an Optimove event generator for a topic (checked, de-duplicated, optionally scheduled)",
    responses=answers(202, "Accepted (or a duplicate of an earlier execution)", *BODY_ERRORS, 409),
    tags=["optimove"],
)
def post_optimove_trigger(
    trigger: Annotated[OptimoveTrigger, Body(embed=False)],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
) -> Response[OptimoveTriggerAccepted]:
    request = KeyedTrigger.from_request(router, idempotency_key, "optimove-triggers")
    deps = wiring.accept_deps()

    def accept() -> OptimoveTriggerAccepted:
        try:
            return accept_optimove(
                trigger,
                execution_id=request.execution_id,
                request_hash=request.request_hash,
                caller=request.caller,
                deps=deps,
            )
        except ContextRejected as rejected:
            first = rejected.details[0]
            more = f" (and {len(rejected.details) - 1} more)" if len(rejected.details) > 1 else ""
            raise ApiError(
                422, "context_invalid", f"{first.field}: {first.message}{more}", rejected.details
            ) from rejected
        except SchemaInvalid as invalid:
            raise ApiError(
                422,
                "schema_invalid",
                str(invalid),
                [ErrorDetail(field="event_generator_id", message=str(invalid))],
            ) from invalid
        except SchemaMissing as missing:
            raise ApiError(
                422,
                "schema_required",
                f"No context schema for event generator {missing}; OPTIMOVE_REQUIRE_SCHEMA is on",
                [ErrorDetail(field="event_generator_id", message="no schema registered")],
            ) from missing

    accepted = request.accept_once(
        settings=deps.settings,
        table=deps.table,
        output_model=OptimoveTriggerAccepted,
        accept=accept,
    )
    metrics.add_metric(
        name="OptimoveDuplicates" if accepted.duplicate else "OptimoveTriggersAccepted",
        unit=MetricUnit.Count,
        value=1,
    )
    logger.info(
        "optimove trigger accepted",
        extra={
            "execution_id": accepted.execution_id,
            "duplicate": accepted.duplicate,
            "status": accepted.status,
        },
    )
    return Response(status_code=202, content_type="application/json", body=accepted)


@router.put(
    "/v1/optimove/generators/<generator_id>/schema",
    summary="Register the JSON Schema of an event generator's context",
    responses=answers(200, "The schema as stored", *BODY_ERRORS),
    tags=["optimove"],
)
def put_generator_schema(
    generator_id: Annotated[GeneratorId, Path()],
    body: Annotated[GeneratorSchema, Body(embed=False)],
) -> GeneratorSchemaView:
    registry = wiring.schemas()
    now = time.time()
    try:
        registry.put(generator_id, body.json_schema, now, router.context["caller"])
    except SchemaInvalid as exc:
        raise ApiError(
            422, "schema_invalid", str(exc), [ErrorDetail(field="schema", message=str(exc))]
        ) from exc
    return _schema_view(generator_id)


@router.get(
    "/v1/optimove/generators/<generator_id>/schema",
    summary="The JSON Schema an event generator's context is checked against",
    responses=answers(200, "The schema and where it comes from", 401, 404, 422),
    tags=["optimove"],
)
def get_generator_schema(generator_id: Annotated[GeneratorId, Path()]) -> GeneratorSchemaView:
    return _schema_view(generator_id)


def _schema_view(generator_id: str) -> GeneratorSchemaView:
    from relay.core.clock import iso

    found = wiring.schemas().lookup(generator_id, fresh=True)
    if found is None:
        raise ApiError(404, "not_found", f"No schema for event generator {generator_id}")
    source, schema, updated_at = found
    return GeneratorSchemaView(
        event_generator_id=generator_id,
        json_schema=schema,
        source=source,  # type: ignore[arg-type]
        updated_at=iso(updated_at) if updated_at else None,
    )


@router.get(
    "/v1/schedules",
    summary="Scheduled work of every destination, soonest first",
    responses=answers(200, "Scheduled work", 401, 422),
)
def get_schedules(
    from_: Annotated[
        str | None, Query(alias="from", description="ISO 8601 lower bound (default: now)")
    ] = None,
    to: Annotated[str | None, Query(description="ISO 8601 upper bound (default: from + 7 days)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> SchedulePage:
    try:
        start = _parse_time(from_) if from_ else time.time()
        end = _parse_time(to) if to else start + 7 * 86_400
    except ValueError as exc:
        raise ApiError(422, "validation_failed", f"from/to: {exc}") from exc
    if end < start:
        raise ApiError(422, "validation_failed", "to is before from")
    if end - start > MAX_SCHEDULE_WINDOW_S:
        raise ApiError(422, "validation_failed", "from/to: list at most 366 days at a time")
    return SchedulePage(items=list_scheduled(core.table(), start, end, limit=limit))


MAX_SCHEDULE_WINDOW_S = 366 * 86_400  # one index query per day listed


def _parse_time(value: str) -> float:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} needs an offset (e.g. Z)")
    return within_range(parsed).timestamp()

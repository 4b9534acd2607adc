"""HTTP API: triggers in, executions out. Parse the event, call the relay library, shape the answer."""

from __future__ import annotations

import time
from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from relay import wiring
from relay.config import get_settings
from relay.flows import executions as execution_flows
from relay.flows.accept import IdempotencyConflict, accept_optimized, body_hash, execution_id_for
from relay.http import ApiError, authenticate, check_body_size, validation_error
from relay.models.common import ErrorResponse
from relay.models.executions import ExecutionPage, ExecutionView
from relay.models.optimized import ExecutionStatus, OptimizedTrigger, TriggerAccepted

logger = Logger()
metrics = Metrics()
tracer = Tracer()
app = APIGatewayHttpResolver(enable_validation=True)
app.configure_openapi(
    title="Campaign relay",
    version="1.0.0",
    summary="Triggers in at any volume, every upstream limit respected, every outcome on record.",
    security_schemes={"bearer": HTTPBearer(description="An API key from RELAY_API_KEYS")},
    security=[{"bearer": []}],
)

PUBLIC_ROUTES = {"GET /v1/health", "GET /v1/openapi.json"}
ERRORS = {
    code: {
        "description": text,
        "content": {"application/json": {"schema": ErrorResponse.model_json_schema()}},
    }
    for code, text in {
        400: "Invalid JSON",
        401: "Missing or wrong API key",
        404: "No such execution",
        409: "Idempotency-Key reused with another body, or not cancellable",
        413: "Body over RELAY_MAX_BODY_BYTES",
        422: "Validation failed; details name each field",
    }.items()
}


@app.post(
    "/v1/optimized/triggers",
    summary="Send profiles to an Optimized.app group (any number; delivered within its limits)",
    responses={202: {"description": "Accepted and queued"}, **ERRORS},
    tags=["optimized"],
)
def post_optimized_trigger(
    trigger: Annotated[OptimizedTrigger, Body(embed=False)],
    idempotency_key: Annotated[str | None, Header(alias="idempotency-key", max_length=255)] = None,
) -> Response[TriggerAccepted]:
    caller = app.context["caller"]
    request_hash = body_hash(app.current_event.json_body)
    execution_id = execution_id_for(idempotency_key, caller)
    deps = wiring.accept_deps()

    def accept() -> TriggerAccepted:
        return accept_optimized(
            trigger, execution_id=execution_id, request_hash=request_hash, caller=caller, deps=deps
        )

    if idempotency_key:
        from relay.flows.idempotency import run_once  # lazy: costs ~250 ms of cold start

        accepted = run_once(
            scope=f"optimized-triggers#{caller}",
            key=idempotency_key,
            request_hash=request_hash,
            table_name=deps.settings.relay_table_name,
            client=deps.table.client,
            ttl_s=deps.settings.idempotency_ttl_s,
            lambda_context=app.lambda_context,
            accept=accept,
        )
    else:
        accepted = accept()
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


@app.get("/v1/executions/<execution_id>", summary="Status, counts and upstream ids", responses=ERRORS)
def get_execution(
    execution_id: Annotated[str, Path(max_length=64)],
    chunks: Annotated[bool, Query(description="Include each chunk with its batch/schedule uuid")] = True,
) -> ExecutionView:
    return execution_flows.get_execution(wiring.table(), execution_id, with_chunks=chunks)


@app.get("/v1/executions", summary="Executions, newest first", responses=ERRORS)
def list_executions(
    status: Annotated[ExecutionStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
    since: Annotated[str | None, Query(description="ISO 8601 lower bound of created_at")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 upper bound of created_at")] = None,
) -> ExecutionPage:
    try:
        return execution_flows.list_executions(
            wiring.table(),
            status=status,
            limit=limit,
            next_token=next_token,
            since_iso=since,
            until_iso=until,
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_token", str(exc)) from exc


@app.delete("/v1/executions/<execution_id>", summary="Cancel what has not been sent yet", responses=ERRORS)
def cancel_execution(execution_id: Annotated[str, Path(max_length=64)]) -> ExecutionView:
    return execution_flows.cancel(wiring.table(), execution_id, time.time())


@app.get("/v1/health", summary="Liveness", security=[])
def health() -> dict[str, Any]:
    return {"status": "ok"}


@app.get("/v1/openapi.json", summary="This API's OpenAPI document", security=[], include_in_schema=False)
def openapi() -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=app.get_openapi_json_schema())


@app.exception_handler(RequestValidationError)
def on_validation_error(exc: RequestValidationError) -> Response:
    return _error(validation_error(exc.errors()))


@app.exception_handler(ApiError)
def on_api_error(exc: ApiError) -> Response:
    return _error(exc)


@app.exception_handler(execution_flows.NotFound)
def on_not_found(exc: execution_flows.NotFound) -> Response:
    return _error(ApiError(404, "not_found", f"No execution {exc}"))


@app.exception_handler(execution_flows.NotCancellable)
def on_not_cancellable(exc: execution_flows.NotCancellable) -> Response:
    return _error(ApiError(409, "not_cancellable", str(exc)))


@app.exception_handler(IdempotencyConflict)
def on_conflict(exc: IdempotencyConflict) -> Response:
    return _error(ApiError(409, "idempotency_conflict", "This Idempotency-Key was used with another body"))


@app.not_found
def on_unknown_route(exc: Exception) -> Response:
    return _error(ApiError(404, "not_found", "No such route"))


@app.exception_handler(Exception)
def on_unexpected(exc: Exception) -> Response:
    if type(exc).__name__ == "IdempotencyInProgress":
        return _error(ApiError(409, "in_progress", "A request with this Idempotency-Key is in progress"))
    logger.exception("unexpected error")
    return _error(ApiError(500, "internal_error", "Something went wrong; it has been logged"))


def _error(error: ApiError) -> Response:
    return Response(status_code=error.status, content_type="application/json", body=error.body())


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    route = f"{event.get('requestContext', {}).get('http', {}).get('method')} {event.get('rawPath')}"
    settings = get_settings()
    try:
        check_body_size(event, settings.relay_max_body_bytes)
        caller = None if route in PUBLIC_ROUTES else authenticate(event.get("headers"), settings.api_keys())
    except ApiError as error:
        return error.as_lambda_response()
    app.append_context(caller=caller)
    logger.append_keys(caller=caller, route=route)
    return app.resolve(event, context)

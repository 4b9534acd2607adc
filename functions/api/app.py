"""HTTP API: triggers in, executions out. Authenticates, then hands the event to the routers
(one per feature, in routes/), which call the relay library and shape the answer."""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from relay.core import tracing
from relay.core.http import ApiError, authenticate, check_body_size, check_json_body, validation_error
from relay.core.settings import get_settings
from relay.executions import service as execution_flows
from relay.executions.requests import IdempotencyConflict, IdempotencyInProgress
from routes import batch, batch_audiences, executions, optimized, optimove, results, status
from routes.errors import answers

logger = Logger()
metrics = Metrics()
tracer = tracing.tracer()
app = APIGatewayHttpResolver(enable_validation=True)
for feature in (optimized, executions, results, optimove, batch, batch_audiences, status):
    app.include_router(feature.router)

PUBLIC_ROUTES = {"GET /v1/health", "GET /v1/openapi.json"}
OPENAPI_ANSWER = {
    "description": "OpenAPI 3.1",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


@app.get("/v1/health", summary="Liveness", security=[], responses=answers(200, "Alive"))
def health() -> dict[str, Any]:
    return {"status": "ok"}


@app.get(
    "/v1/openapi.json",
    summary="This API's OpenAPI document",
    security=[],
    responses={200: OPENAPI_ANSWER},
)
def openapi() -> Response[str]:
    return Response(status_code=200, content_type="application/json", body=openapi_document())


@cache
def openapi_document() -> str:
    """Built on first request: the OpenAPI models cost ~130 ms to import, which no other route needs."""
    import document
    from aws_lambda_powertools.event_handler.openapi.models import HTTPBearer

    app.configure_openapi(
        title="Campaign relay",
        version="1.0.0",
        summary="Triggers in at any volume, every upstream limit respected, every outcome on record.",
        security_schemes={"bearer": HTTPBearer(description="An API key from RELAY_API_KEYS")},
        security=[{"bearer": []}],
    )
    generated = json.loads(app.get_openapi_json_schema())
    return json.dumps(document.complete(generated, PUBLIC_ROUTES), separators=(",", ":"))


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
    """Every request no route takes ends here: API Gateway sends it to this function through the
    template's catch-all (``$default``) route, so even a mistyped path or a wrong method is answered
    in the error shape. A path some route serves with other methods is a 405 naming them."""
    method, path = app.current_event.http_method.upper(), app.current_event.path
    allowed = sorted(m for m, rule in _every_route() if rule.fullmatch(path) and m != method)
    if allowed:
        error = ApiError(
            405, "method_not_allowed", f"{method} is not allowed on {path}; use {', '.join(allowed)}"
        )
        return Response(
            status_code=405,
            content_type="application/json",
            body=error.body(),
            headers={"Allow": ", ".join(allowed)},
        )
    return _error(
        ApiError(404, "not_found", f"No route {method} {path}; the routes are listed in /v1/openapi.json")
    )


# Routes of this HTTP API that other functions serve (only their methods are needed here).
OTHER_FUNCTIONS_ROUTES = (("POST", "/v1/webhooks/optimized"),)


@cache
def _every_route() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(method, compiled path) of every route of the API; the resolver's own list (it has no public
    accessor; tests/integration/test_api_answers.py fails if Powertools renames it)."""
    own = [(r.method, r.rule) for r in (*app._static_routes, *app._dynamic_routes)]
    others = [(m, re.compile(re.escape(p))) for m, p in OTHER_FUNCTIONS_ROUTES]
    return tuple(own + others)


@app.exception_handler(IdempotencyInProgress)
def on_in_progress(exc: IdempotencyInProgress) -> Response:
    return _error(ApiError(409, "in_progress", "A request with this Idempotency-Key is in progress"))


@app.exception_handler(Exception)
def on_unexpected(exc: Exception) -> Response:
    logger.exception("unexpected error")
    return _error(ApiError(500, "internal_error", "Something went wrong; it has been logged"))


def _error(error: ApiError) -> Response:
    return Response(
        status_code=error.status,
        content_type="application/json",
        body=error.body(),
        headers=error.headers or None,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    route = f"{event.get('requestContext', {}).get('http', {}).get('method')} {event.get('rawPath')}"
    settings = get_settings()
    try:
        check_body_size(event, settings.relay_max_body_bytes)
        caller = None if route in PUBLIC_ROUTES else authenticate(event.get("headers"), settings.api_keys())
        event = check_json_body(event)
    except ApiError as error:
        return error.as_lambda_response()
    app.append_context(caller=caller)
    logger.append_keys(caller=caller, route=route)
    return app.resolve(event, context)

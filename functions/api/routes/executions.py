"""GET/DELETE /v1/executions..."""

from __future__ import annotations

import time
from typing import Annotated, Literal, Union

from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Path, Query
from relay import destinations  # noqa: F401 - registers every destination (filling the registry)
from relay.core import wiring
from relay.core.http import ApiError
from relay.executions import registry
from relay.executions import service as execution_flows
from relay.executions.models import ExecutionPage

from routes.errors import answers

router = Router()

# Every status of every registered destination (the registry is filled by the app's imports).
Status = Literal[registry.statuses()]  # type: ignore[valid-type]
ExecutionView = Union[tuple(d.view_model() for d in registry.every())]  # type: ignore[valid-type]  # noqa: UP007


class Page(ExecutionPage):
    items: list[ExecutionView]  # type: ignore[valid-type]


@router.get(
    "/v1/executions/<execution_id>",
    summary="Status, counts and upstream ids",
    responses=answers(200, "The execution", 401, 404, 422),
)
def get_execution(
    execution_id: Annotated[str, Path(max_length=64)],
    chunks: Annotated[bool, Query(description="Include each chunk with its batch/schedule uuid")] = True,
) -> ExecutionView:
    return execution_flows.get_execution(wiring.table(), execution_id, with_chunks=chunks)


@router.get(
    "/v1/executions",
    summary="Executions, newest first",
    responses=answers(200, "A page of executions", 400, 401, 422),
)
def list_executions(
    status: Annotated[Status | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
    since: Annotated[str | None, Query(description="ISO 8601 lower bound of created_at")] = None,
    until: Annotated[str | None, Query(description="ISO 8601 upper bound of created_at")] = None,
) -> Page:
    try:
        page = execution_flows.list_executions(
            wiring.table(),
            status=status,
            limit=limit,
            next_token=next_token,
            since_iso=since,
            until_iso=until,
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_token", str(exc)) from exc
    return Page(items=page.items, next_token=page.next_token)


@router.delete(
    "/v1/executions/<execution_id>",
    summary="Cancel what has not been sent yet",
    responses=answers(200, "The execution after cancelling", 401, 404, 409, 422, 503),
)
def cancel_execution(execution_id: Annotated[str, Path(max_length=64)]) -> ExecutionView:
    return execution_flows.cancel(wiring.table(), execution_id, time.time())

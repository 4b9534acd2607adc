"""GET /v1/executions/{id}/results, GET /v1/results?unmatched=true and ?mirror=skipped (webhook
results) and POST /v1/results/replay (forwarding on again, a window's results forwarded once more)."""

from __future__ import annotations

import time
from typing import Annotated

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from relay.core import wiring
from relay.core.http import ApiError
from relay.executions import service as execution_flows
from relay.results import listing
from relay.results.models import MirrorFilter, ReplayAccepted, ReplayRequest, ResultPage, ResultType

from routes.errors import answers

router = Router()
logger = Logger(child=True)


@router.get(
    "/v1/executions/<execution_id>/results",
    summary="Webhook results of an execution, oldest first",
    responses=answers(200, "A page of results", 400, 401, 404, 422),
    tags=["results"],
)
def execution_results(
    execution_id: Annotated[str, Path(max_length=64)],
    type: Annotated[ResultType | None, Query(description="Only results of this type")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> ResultPage:
    table = wiring.table()
    execution_flows.get_execution(table, execution_id, with_chunks=False)  # 404 if unknown
    return _page(execution_id, type, limit, next_token)


@router.get(
    "/v1/results",
    summary="Webhook results that matched no execution, or that could not be mirrored, oldest first",
    responses=answers(200, "A page of results", 400, 401, 422),
    tags=["results"],
)
def unmatched_results(
    unmatched: Annotated[
        bool | None, Query(description="true: results that matched no execution (or use mirror=skipped)")
    ] = None,
    mirror: Annotated[
        MirrorFilter | None,
        Query(description="skipped: results a destination could not mirror (e.g. no Batch custom id)"),
    ] = None,
    type: Annotated[ResultType | None, Query(description="Only results of this type")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> ResultPage:
    if mirror is not None and unmatched is None:
        try:
            return listing.list_mirror_skipped(wiring.table(), type_=type, limit=limit, next_token=next_token)
        except ValueError as exc:
            raise ApiError(400, "invalid_token", str(exc)) from exc
    if not unmatched or mirror is not None:
        raise ApiError(
            400,
            "unsupported_filter",
            "List unmatched=true or mirror=skipped (one of them); matched results are listed per execution"
            " at /v1/executions/{id}/results",
        )
    return _page(None, type, limit, next_token)


def _page(execution_id: str | None, type_: str | None, limit: int, next_token: str | None) -> ResultPage:
    try:
        return listing.list_results(
            wiring.table(), execution_id=execution_id, type_=type_, limit=limit, next_token=next_token
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_token", str(exc)) from exc


@router.post(
    "/v1/results/replay",
    summary="Turn results forwarding on again and forward the results received in a window once more",
    responses=answers(202, "Forwarding enabled; the window's results queued", 400, 401, 409, 413, 422),
    tags=["results"],
)
def replay_results(request: Annotated[ReplayRequest, Body(embed=False)]) -> Response[ReplayAccepted]:
    from relay.results import replay
    from relay.results import wiring as results_wiring
    from relay.results.settings import get_settings

    url = get_settings().results_url()
    if not url:
        raise ApiError(
            409, "forwarding_off", "RESULTS_WEBHOOK_URL is not set: there is nowhere to forward to"
        )
    if request.until is not None and request.until <= request.since:
        raise ApiError(422, "validation_failed", "until: must be after since")
    accepted = replay.replay(wiring.table(), results_wiring.queue(), url, request, clock=time.time)
    logger.warning(
        "results forwarding enabled and a window replayed",
        extra={"queued": accepted.queued, "was_disabled": accepted.was_disabled, "since": accepted.since},
    )
    return Response(status_code=202, content_type="application/json", body=accepted)

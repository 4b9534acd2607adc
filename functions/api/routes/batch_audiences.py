"""Batch.com custom-id audiences: POST/GET /v1/batch/audiences, POST/PUT
/v1/batch/audiences/{name}/ids, DELETE /v1/batch/audiences/{name}.

Writes answer 202 with an execution id (GET /v1/executions/{id} follows them to the audience
being ready); the listing is read from Batch at once, through the project's 1 request/s."""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.metrics import MetricUnit
from relay.core.http import ApiError
from relay.destinations.batch.audiences.models import (
    AudienceCreate,
    AudienceName,
    AudiencePage,
    AudienceWriteAccepted,
    IdsReplace,
    IdsUpdate,
    Operation,
)

from routes.errors import BODY_ERRORS, answers
from routes.keyed import KeyedTrigger

router = Router()
logger = Logger(child=True)
metrics = Metrics()

IdempotencyKey = Annotated[str | None, Header(alias="idempotency-key", max_length=255)]
WRITE_ANSWERS = answers(202, "Accepted: applied after the audience's earlier writes", *BODY_ERRORS, 409, 503)


def _accept(
    idempotency_key: str | None,
    operation: Operation,
    name: str,
    *,
    entries: list[dict[str, Any]] | None = None,
    display_name: str | None = None,
) -> Response[AudienceWriteAccepted]:
    from relay.destinations.batch.audiences import store, wiring
    from relay.destinations.batch.audiences.accept import accept_write

    request = KeyedTrigger.from_request(router, idempotency_key, f"batch-audience-{operation}")
    deps = wiring.accept_deps()

    def accept() -> AudienceWriteAccepted:
        try:
            return accept_write(
                operation,
                name,
                entries=entries,
                display_name=display_name,
                execution_id=request.execution_id,
                request_hash=request.request_hash,
                caller=request.caller,
                deps=deps,
            )
        except store.SequenceBusy as busy:
            raise ApiError(
                503, "busy", f"Too many writes to audience {busy} at once; send it again"
            ) from busy

    accepted = request.accept_once(
        settings=deps.settings, table=deps.table, output_model=AudienceWriteAccepted, accept=accept
    )
    metrics.add_metric(name="BatchAudienceWritesAccepted", unit=MetricUnit.Count, value=1)
    logger.info(
        "audience write accepted",
        extra={
            "execution_id": accepted.execution_id,
            "audience": name,
            "operation": operation,
            "ids": accepted.ids,
            "sequence": accepted.sequence,
        },
    )
    return Response(status_code=202, content_type="application/json", body=accepted)


@router.post(
    "/v1/batch/audiences",
    summary="Create a custom-id audience on Batch",
    responses=WRITE_ANSWERS,
    tags=["batch"],
)
def post_audience(
    audience: Annotated[AudienceCreate, Body(embed=False)], idempotency_key: IdempotencyKey = None
) -> Response[AudienceWriteAccepted]:
    return _accept(idempotency_key, "create", audience.name, display_name=audience.display_name)


@router.post(
    "/v1/batch/audiences/<name>/ids",
    summary="Add or remove ids of an audience, any number, in order (the last action per id wins)",
    responses=WRITE_ANSWERS,
    tags=["batch"],
)
def post_audience_ids(
    name: Annotated[AudienceName, Path()],
    update: Annotated[IdsUpdate, Body(embed=False)],
    idempotency_key: IdempotencyKey = None,
) -> Response[AudienceWriteAccepted]:
    entries = [change.model_dump(exclude_none=True) for change in update.ids]
    return _accept(idempotency_key, "update", name, entries=entries)


@router.put(
    "/v1/batch/audiences/<name>/ids",
    summary="Replace an audience's ids, any number (the first call replaces, the rest add)",
    responses=WRITE_ANSWERS,
    tags=["batch"],
)
def put_audience_ids(
    name: Annotated[AudienceName, Path()],
    replace: Annotated[IdsReplace, Body(embed=False)],
    idempotency_key: IdempotencyKey = None,
) -> Response[AudienceWriteAccepted]:
    entries = [member.model_dump(exclude_none=True) for member in replace.ids]
    return _accept(idempotency_key, "replace", name, entries=entries)


@router.delete(
    "/v1/batch/audiences/<name>",
    summary="Remove an audience from Batch",
    responses=answers(202, "Accepted: applied after the audience's earlier writes", 401, 409, 422, 503),
    tags=["batch"],
)
def delete_audience(
    name: Annotated[AudienceName, Path()], idempotency_key: IdempotencyKey = None
) -> Response[AudienceWriteAccepted]:
    return _accept(idempotency_key, "remove", name)


@router.get(
    "/v1/batch/audiences",
    summary="The project's audiences on Batch, a page at a time",
    responses=answers(200, "A page of audiences", 400, 401, 422, 429, 502, 503),
    tags=["batch"],
)
def list_audiences(
    limit: Annotated[int, Query(ge=1, le=100)] = 25,
    next_token: Annotated[str | None, Query(max_length=2048)] = None,
) -> AudiencePage:
    from relay.destinations.batch import wiring
    from relay.destinations.batch.audiences.listing import ListUnavailable, list_page
    from relay.destinations.batch.settings import get_settings

    try:
        return list_page(
            wiring.client(),
            wiring.project_limiter(),
            limit=limit,
            next_token=next_token,
            max_wait_s=get_settings().batch_audience_list_wait_s,
        )
    except ValueError as exc:
        raise ApiError(400, "invalid_token", str(exc)) from exc
    except ListUnavailable as unavailable:
        retry = {"Retry-After": "1"} if unavailable.status == 429 else None
        raise ApiError(
            unavailable.status, unavailable.code, unavailable.message, headers=retry
        ) from unavailable

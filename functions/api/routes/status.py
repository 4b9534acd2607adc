"""GET /v1/status: what the relay is doing right now (`relay status`)."""

from __future__ import annotations

import time

from aws_lambda_powertools.event_handler.api_gateway import Router
from relay import destinations  # noqa: F401 - registers every destination (filling the registry)
from relay.core import wiring
from relay.core.aws import client
from relay.executions.models import RelayStatus
from relay.executions.status import relay_status
from relay.results.settings import DEAD_LETTER_QUEUES as RESULTS_DEAD_LETTER_QUEUES

from routes.errors import answers

router = Router()


@router.get(
    "/v1/status",
    summary="Per destination what waits and each group's use of its window; queue and DLQ depths",
    responses=answers(200, "The relay right now", 401),
)
def get_status() -> RelayStatus:
    return relay_status(wiring.table(), client("sqs"), time.time(), RESULTS_DEAD_LETTER_QUEUES)

"""The local stack resolves HTTP requests on many threads at once: each must see its own event."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver
from aws_lambda_powertools.event_handler.api_gateway import Router
from relay_local import powertools_patches


def _resolver(barrier: threading.Barrier) -> APIGatewayHttpResolver:
    """A fresh resolver (as a separate handler copy has) whose route reads the event late."""
    app = APIGatewayHttpResolver()
    router = Router()

    @router.post("/echo")
    def echo() -> dict[str, Any]:
        barrier.wait(timeout=5)  # both requests are now mid-resolve
        return {"seen": router.current_event.json_body["n"], "context": router.lambda_context}

    app.include_router(router)
    return app


def _event(n: int) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "POST /echo",
        "rawPath": "/echo",
        "rawQueryString": "",
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "path": "/echo"}, "stage": "$default"},
        "body": json.dumps({"n": n}),
        "isBase64Encoded": False,
    }


def test_concurrent_resolves_each_see_their_own_event_and_context() -> None:
    powertools_patches.apply()
    barrier = threading.Barrier(2)
    apps = [_resolver(barrier), _resolver(barrier)]
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda n: apps[n].resolve(_event(n), f"context-{n}"), range(2)))
    seen = [json.loads(a["body"]) for a in answers]
    assert seen == [{"seen": 0, "context": "context-0"}, {"seen": 1, "context": "context-1"}]

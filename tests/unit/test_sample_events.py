"""events/ has a sample event for every function of the template (what ``sam local invoke
<Function> -e events/<file>`` takes), and each one is what its function reads.

Which function an event is for follows from its shape and the template: an HTTP API event's
``routeKey`` is a route of exactly one function, an SQS record's queue (the last part of its
``eventSourceARN``) feeds one, and a scheduled event's rule (SAM names it
``<stack>-<Function><Event>-<suffix>``) names one. Files that are none of these (a webhook body
for ``relay-sign``) are not Lambda events; nor is an event for a queue, route or rule this
template does not have (yet: a destination's sample may arrive before its function).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import (
    APIGatewayProxyEventV2,
    EventBridgeEvent,
    SQSEvent,
)
from relay_local.template import load_template

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "events"
SAMPLE_WEBHOOK_SECRET = "whsec_c2FtcGxlLXdlYmhvb2stc2VjcmV0LW9ubHk="
"""The secret events/webhook_optimized.json is signed with (``WEBHOOK_SECRET`` to invoke it)."""

TEMPLATE = load_template(REPO / "template.yaml")
FUNCTIONS = {
    logical_id: resource["Properties"]
    for logical_id, resource in TEMPLATE["Resources"].items()
    if resource["Type"] == "AWS::Serverless::Function"
}


def folder(logical_id: str) -> str:
    return Path(FUNCTIONS[logical_id]["CodeUri"]).name


def _routes() -> dict[str, str]:
    out = {}
    for logical_id, props in FUNCTIONS.items():
        for event in (props.get("Events") or {}).values():
            if event["Type"] == "HttpApi":
                props = event.get("Properties") or {}
                if "Path" not in props:  # the catch-all route ($default): no sample is for it
                    continue
                out[f"{props.get('Method', 'ANY').upper()} {props['Path']}"] = logical_id
    return out


def _queues() -> dict[str, str]:
    out = {}
    for logical_id, props in FUNCTIONS.items():
        for event in (props.get("Events") or {}).values():
            if event["Type"] == "SQS":
                out[event["Properties"]["Queue"]["Fn::GetAtt"][0]] = logical_id
    return out


def _rules() -> dict[str, str]:
    return {
        f"{logical_id}{name}": logical_id
        for logical_id, props in FUNCTIONS.items()
        for name, event in (props.get("Events") or {}).items()
        if event["Type"] in ("Schedule", "ScheduleV2")
    }


def function_of(event: dict[str, Any]) -> str | None:
    """The logical id of the function ``event`` is for; None when it is not a Lambda event."""
    if "routeKey" in event:
        return _routes().get(event["routeKey"])
    if event.get("Records") and event["Records"][0].get("eventSource") == "aws:sqs":
        queues = {record["eventSourceARN"].rsplit(":", 1)[1] for record in event["Records"]}
        assert len(queues) == 1, "one queue per event, as Lambda delivers them"
        return _queues().get(queues.pop())
    if event.get("detail-type") == "Scheduled Event":
        rule = event["resources"][0].rsplit("/", 1)[1]
        functions = {fid for name, fid in _rules().items() if f"-{name}-" in rule}
        assert len(functions) <= 1, f"{rule} names {functions}"
        return functions.pop() if functions else None
    return None


SAMPLES = {path.name: json.loads(path.read_text()) for path in sorted(EVENTS.glob("*.json"))}
LAMBDA_EVENTS = {name: event for name, event in SAMPLES.items() if function_of(event) is not None}


def test_every_function_has_a_sample_event() -> None:
    covered = {folder(function_of(event)) for event in LAMBDA_EVENTS.values()}
    assert covered == {folder(logical_id) for logical_id in FUNCTIONS}
    for required in ("optimized_trigger.json", "get_execution.json", "dispatch_wake.json"):
        assert required in LAMBDA_EVENTS  # tests/e2e invoke the handlers with these


@pytest.mark.parametrize("name", sorted(LAMBDA_EVENTS))
def test_a_sample_event_is_what_its_function_reads(name: str) -> None:
    event = LAMBDA_EVENTS[name]
    function = folder(function_of(event))
    if "routeKey" in event:
        check_http(function, APIGatewayProxyEventV2(event))
    elif "Records" in event:
        check_sqs(function, SQSEvent(event))
    else:
        scheduled = EventBridgeEvent(event)
        assert scheduled.source == "aws.events"
        assert scheduled.detail == {}


def check_http(function: str, event: APIGatewayProxyEventV2) -> None:
    method, path = event.route_key.split(" ", 1)
    assert event.request_context.http.method == method
    assert event.raw_path.count("/") == path.count("/")  # the path fits the route's template
    if function == "webhooks":
        from relay.results.signatures import Verifier

        body = event.body.encode()
        at = int(event.headers["webhook-timestamp"])
        assert (
            Verifier((SAMPLE_WEBHOOK_SECRET,)).verify(event.headers, body, now=at)
            == event.headers["webhook-id"]
        )
        return
    assert event.headers["authorization"].startswith("Bearer ")
    if event.body is None:
        return
    assert event.headers["content-type"] == "application/json"
    body = json.loads(event.body)
    if event.route_key == "POST /v1/optimized/triggers":
        from relay.destinations.optimized.models import OptimizedTrigger

        OptimizedTrigger.model_validate(body)
    elif event.route_key == "POST /v1/optimove/triggers":
        from relay.destinations.optimove.models import OptimoveTrigger

        OptimoveTrigger.model_validate(body)


def check_sqs(function: str, event: SQSEvent) -> None:
    import relay.destinations  # noqa: F401 - registers every destination
    from relay.executions import registry

    for record in event.records:
        message = json.loads(record.body)
        assert message.get("kind")
        if function == "deliver":
            assert message["kind"] in {"record", "forward", "optimove_status"}
            assert message.get("event_id") or message.get("result")
        else:  # dispatch and poll hand each message to the destination it names
            assert registry.get(message["destination"]).name == message["destination"]

"""`relay-dlq` covers every dead-letter queue the template has, and says why each message died."""

from __future__ import annotations

import json
from pathlib import Path

from relay_local.template import load_template, resources_of_type
from relay_ops import dlq

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def test_every_dead_letter_queue_of_the_template_is_listed_and_re_drivable() -> None:
    template = load_template(TEMPLATE)
    queues = resources_of_type(template, "AWS::SQS::Queue")
    targets = {
        q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
        for q in queues.values()
        if "RedrivePolicy" in q.get("Properties", {})
    }
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    url_of = {
        value["Fn::GetAtt"][0]: name
        for name, value in env.items()
        if isinstance(value, dict) and "Fn::GetAtt" in value
    }
    assert targets, "the template has dead-letter queues"
    assert {url_of[t] for t in targets} == set(dlq.dead_letter_queues().values())


def test_a_message_says_why_it_died() -> None:
    parked = {
        "Body": json.dumps(
            {"kind": "dead_chunk", "destination": "optimized", "execution_id": "e1", "reason": "500 x3"}
        ),
        "Attributes": {"ApproximateReceiveCount": "2", "SentTimestamp": "1796000000000"},
    }
    assert dlq.summary("dispatch", parked) == {
        "queue": "dispatch",
        "kind": "dead_chunk",
        "destination": "optimized",
        "execution_id": "e1",
        "why": "500 x3",
        "receive_count": 2,
        "first_sent_at": "2026-11-30T00:53:20Z",
    }
    moved = {"Body": json.dumps({"kind": "wake", "destination": "optimized"}), "Attributes": {}}
    assert "maxReceiveCount" in dlq.summary("dispatch", moved)["why"]
    assert dlq.summary("results", {"Body": "not json", "Attributes": {}})["kind"] == "unreadable"


def test_a_parked_result_moved_back_is_queued_again_with_its_attempts_reset() -> None:
    from relay.results.deliver import DeliverDeps, handle_message
    from relay.results.settings import ResultsSettings

    sent: list[dict] = []

    class Queue:
        def send(self, message: dict, delay_s: float = 0) -> None:
            sent.append(message)

    parked = {
        "kind": "forward",
        "attempt": 8,
        "event_id": "e1",
        "reason": "endpoint answered 500 eight times",
    }
    deps = DeliverDeps(table=None, queue=Queue(), settings=ResultsSettings(), endpoint=None)  # type: ignore[arg-type]
    assert "re-driven" in handle_message(parked, deps)
    assert sent == [{"kind": "forward", "attempt": 1, "event_id": "e1"}]


def test_a_parked_destination_message_moved_back_is_re_driven_not_handled() -> None:
    from relay.executions import registry

    calls: list[str] = []

    class Parked(registry.Destination):
        name = "parked-test"

        def handle(self, message: dict, **_: object) -> str:
            calls.append("handle")
            return "handled"

        def redrive(self, message: dict, now: float) -> str:
            calls.append("redrive")
            return "re-driven"

    destination = Parked()
    assert (
        destination.process({"kind": "dead_chunk", "reason": "5xx"}, remaining_ms=lambda: 1, emit=print)
        == "re-driven"
    )
    assert destination.process({"kind": "wake"}, remaining_ms=lambda: 1, emit=print) == "handled"
    assert calls == ["redrive", "handle"]

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

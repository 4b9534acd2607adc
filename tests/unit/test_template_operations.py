"""template.yaml: every function has only the permissions its code uses, and operators get paged.

The webhooks function writes nothing but its own ledger items; no function keeps SAM's CRUD
policies; secret ARNs match one secret (``-??????``); every alarm notifies the alarm topic; every
dead-letter queue, work queue and function is alarmed; the dashboard body is valid JSON.
"""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

import pytest
from relay.core.store import keys
from relay.results.store import SOURCE
from relay_local.template import Resolver, load_template

TEMPLATE = load_template(Path(__file__).resolve().parents[2] / "template.yaml")
RESOURCES = TEMPLATE["Resources"]
FUNCTIONS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::Serverless::Function"}
QUEUES = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::SQS::Queue"}
ALARMS = {k: v for k, v in RESOURCES.items() if v["Type"] == "AWS::CloudWatch::Alarm"}
DEAD_LETTER_QUEUES = {
    q["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0]
    for q in QUEUES.values()
    if "RedrivePolicy" in q["Properties"]
}
WORK_QUEUES = set(QUEUES) - DEAD_LETTER_QUEUES


def statements(function: str) -> list[dict]:
    out = []
    for policy in FUNCTIONS[function]["Properties"]["Policies"]:
        assert set(policy) == {"Statement"}, f"{function}: {policy} is not an inline statement"
        out += policy["Statement"]
    return out


def actions(statement: dict) -> list[str]:
    value = statement["Action"]
    return [value] if isinstance(value, str) else value


def alarmed_dimension(name: str, metric: str) -> set[str]:
    """Logical ids named by the dimension ``name`` of the alarms on ``metric``."""
    found = set()
    for alarm in ALARMS.values():
        props = alarm["Properties"]
        if props.get("MetricName") != metric:
            continue
        for dimension in props["Dimensions"]:
            value = dimension["Value"]
            if dimension["Name"] == name and isinstance(value, dict):
                found.add(value.get("Ref") or value["Fn::GetAtt"][0])
    return found


def test_webhooks_only_puts_its_own_ledger_items_and_reads_nothing():
    own = statements("WebhooksFunction")
    dynamodb = [s for s in own if any(a.startswith("dynamodb:") for a in actions(s))]
    assert len(dynamodb) == 1
    (statement,) = dynamodb
    assert actions(statement) == ["dynamodb:PutItem"]
    patterns = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
    ledger_pk = keys.webhook_seen(SOURCE, "evt-1")["pk"]
    assert any(fnmatch.fnmatchcase(ledger_pk, p) for p in patterns)
    # Nothing else the relay keeps matches: not an execution, a result, a group or a limiter.
    for other in (keys.execution("x")["pk"], keys.result(None, "t", "e")["pk"], keys.group_state("g")["pk"]):
        assert not any(fnmatch.fnmatchcase(other, p) for p in patterns)
    sqs = [s for s in own if any(a.startswith("sqs:") for a in actions(s))]
    assert [actions(s) for s in sqs] == [["sqs:SendMessage"]]
    assert [r["Fn::GetAtt"][0] for s in sqs for r in s["Resource"]] == ["ResultsQueue"]


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_no_function_may_delete_scan_or_use_wildcards(function):
    for statement in statements(function):
        for action in actions(statement):
            assert "*" not in action, f"{function}: {action}"
            assert action not in ("dynamodb:Scan", "sqs:DeleteMessage")
            if action == "dynamodb:DeleteItem":
                # Only the API, and only its Powertools Idempotency records (deleted when a
                # request fails, so the client's retry runs at once).
                assert function == "ApiFunction"
                leading = statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                assert leading == ["IDEMPOTENCY#*"]


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_secret_arns_match_one_secret(function):
    for statement in statements(function):
        if "secretsmanager:GetSecretValue" not in actions(statement):
            continue
        for resource in statement["Resource"]:
            assert resource["Fn::Sub"].endswith("}-??????"), resource


def test_tracer_never_captures_responses():
    env = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert env["POWERTOOLS_TRACER_CAPTURE_RESPONSE"] == "false"


def test_every_alarm_notifies_the_alarm_topic():
    assert ALARMS
    for name, alarm in ALARMS.items():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
        assert props["OKActions"] == [{"Ref": "AlarmTopic"}], name


def test_every_queue_and_function_is_alarmed():
    assert alarmed_dimension("QueueName", "ApproximateNumberOfMessagesVisible") >= DEAD_LETTER_QUEUES
    assert alarmed_dimension("QueueName", "ApproximateAgeOfOldestMessage") == WORK_QUEUES
    assert alarmed_dimension("FunctionName", "Errors") == set(FUNCTIONS)
    assert alarmed_dimension("FunctionName", "Throttles") == set(FUNCTIONS)
    relay_metrics = {
        a["Properties"]["MetricName"]
        for a in ALARMS.values()
        if a["Properties"]["Namespace"] == "CampaignRelay"
    }
    assert relay_metrics >= {
        "UpstreamRateLimited",
        "ChunksAbandoned",
        "BatchesAmbiguous",
        "ResultsForwardingDisabled",
        "Repairs",
    }


def test_dashboard_body_is_json_and_names_real_resources():
    resolver = Resolver(
        TEMPLATE,
        refs={k: k for k in RESOURCES},
        attrs={k: {"QueueName": k, "Arn": f"arn:{k}"} for k in RESOURCES},
    )
    body = json.loads(resolver.resolve(RESOURCES["OperationsDashboard"]["Properties"]["DashboardBody"]))
    metrics = [m for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]]
    named = {m[3] for m in metrics if isinstance(m[0], str) and m[0] in ("AWS/SQS", "AWS/Lambda")}
    assert named >= set(QUEUES) | set(FUNCTIONS)
